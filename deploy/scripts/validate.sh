#!/usr/bin/env bash
# Validate every manifest and monitoring file offline: kubernetes-validate --strict,
# promtool (config, rules, rule unit tests), amtool, docker-compose config, shellcheck.
# --dry-run prints the checks instead of running them.
set -euo pipefail
# shellcheck source=deploy/scripts/common.sh
source "$(dirname "$0")/common.sh"
parse_dry_run "$@"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
run() {
  if [[ "$DRY_RUN" == 1 ]]; then echo "+ $*"; else "$@"; fi
}
run kubernetes-validate --strict "$ROOT"/deploy/k8s/*.yaml
run promtool check config "$ROOT/deploy/prometheus/prometheus.yml"
run promtool check rules "$ROOT/deploy/prometheus/rules.yml"
run promtool test rules "$ROOT/deploy/prometheus/rules.test.yml"
run amtool check-config "$ROOT/deploy/alertmanager/alertmanager.yml"
run docker-compose -f "$ROOT/docker-compose.yml" config -q
run shellcheck -x "$ROOT"/deploy/scripts/*.sh "$ROOT"/scripts/test "$ROOT"/scripts/bench-e2e "$ROOT"/scripts/bench-kafka "$ROOT"/scripts/bench-replay "$ROOT"/scripts/bench-http "$ROOT"/scripts/bench-roles "$ROOT"/.ci/run
echo "deploy files valid"

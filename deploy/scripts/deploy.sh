#!/usr/bin/env bash
# Blue-green deploy of IMAGE: apply the shared objects, roll the idle track to IMAGE, wait
# until it is ready (/readyz), then switch the Service to it. The old track keeps running
# for rollback.sh. Usage: deploy.sh IMAGE [--dry-run]
set -euo pipefail
# shellcheck source=deploy/scripts/common.sh
source "$(dirname "$0")/common.sh"
parse_dry_run "$@"
IMAGE="${1:?usage: deploy.sh IMAGE [--dry-run]}"
live="$(live_track)"
next="$(other_track "$live")"
for f in namespace configmap rbac service networkpolicy pdb; do
  kube apply -f "$K8S_DIR/$f.yaml"
done
kube apply -f "$K8S_DIR/deployment-$next.yaml" -f "$K8S_DIR/hpa-$next.yaml"
kube set image "deployment/bizra-risk-$next" "engine=$IMAGE"
kube rollout status "deployment/bizra-risk-$next" --timeout=300s
switch_service "$next"
echo "live track: $next (was $live); roll back with rollback.sh"

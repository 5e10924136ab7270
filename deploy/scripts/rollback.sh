#!/usr/bin/env bash
# Roll back a blue-green deploy: switch the Service to the other track (still running the
# previous image) once it is ready. Usage: rollback.sh [--dry-run]
set -euo pipefail
# shellcheck source=deploy/scripts/common.sh
source "$(dirname "$0")/common.sh"
parse_dry_run "$@"
live="$(live_track)"
previous="$(other_track "$live")"
kube rollout status "deployment/bizra-risk-$previous" --timeout=120s
switch_service "$previous"
echo "live track: $previous (rolled back from $live)"

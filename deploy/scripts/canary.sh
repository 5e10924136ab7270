#!/usr/bin/env bash
# Canary: run one pod of IMAGE on the idle track beside the live one, let it take its share
# of the Service (both tracks selected by name only) for WATCH_S seconds, and keep it only
# if it stays ready; otherwise scale it back to zero. Usage: canary.sh IMAGE [--dry-run]
set -euo pipefail
# shellcheck source=deploy/scripts/common.sh
source "$(dirname "$0")/common.sh"
parse_dry_run "$@"
IMAGE="${1:?usage: canary.sh IMAGE [--dry-run]}"
WATCH_S="${WATCH_S:-300}"
live="$(live_track)"
next="$(other_track "$live")"
kube apply -f "$K8S_DIR/deployment-$next.yaml"
kube set image "deployment/bizra-risk-$next" "engine=$IMAGE"
kube scale "deployment/bizra-risk-$next" --replicas=1
kube rollout status "deployment/bizra-risk-$next" --timeout=300s
kube patch service bizra-risk --type json -p '[{"op":"remove","path":"/spec/selector/track"}]'
if [[ "$DRY_RUN" == 1 ]]; then
  echo "+ sleep $WATCH_S; check the canary stays ready"
  exit 0
fi
sleep "$WATCH_S"
ready="$(kubectl -n "$NAMESPACE" get deployment "bizra-risk-$next" -o jsonpath='{.status.readyReplicas}')"
if [[ "${ready:-0}" -ge 1 ]]; then
  switch_service "$live"
  echo "canary on $next healthy for ${WATCH_S}s; promote with deploy.sh $IMAGE"
else
  switch_service "$live"
  kube scale "deployment/bizra-risk-$next" --replicas=0
  echo "canary on $next not ready; scaled back" >&2
  exit 1
fi

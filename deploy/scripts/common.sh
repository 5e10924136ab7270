#!/usr/bin/env bash
# Shared by the deploy scripts: run (or, with --dry-run, print) kubectl commands.
set -euo pipefail
export NAMESPACE="${NAMESPACE:-bizra-risk}"
DRY_RUN=0
K8S_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/../k8s" && pwd)"
export K8S_DIR

parse_dry_run() {
  for arg in "$@"; do
    if [[ "$arg" == "--dry-run" ]]; then DRY_RUN=1; fi
  done
}

kube() {
  if [[ "$DRY_RUN" == 1 ]]; then
    echo "+ kubectl -n $NAMESPACE $*"
  else
    kubectl -n "$NAMESPACE" "$@"
  fi
}

# The track (blue or green) the Service sends traffic to now.
live_track() {
  if [[ "$DRY_RUN" == 1 ]]; then
    echo blue
  else
    kubectl -n "$NAMESPACE" get service bizra-risk -o jsonpath='{.spec.selector.track}'
  fi
}

other_track() {
  if [[ "$1" == blue ]]; then echo green; else echo blue; fi
}

switch_service() {
  kube patch service bizra-risk --type merge -p "{\"spec\":{\"selector\":{\"track\":\"$1\"}}}"
}

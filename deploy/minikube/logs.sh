#!/usr/bin/env bash
# Everything needed to see why a deployment failed, printed and saved under
# a folder (default: ./minikube-logs): every pod of the cluster, then for the
# chart's and Dapr's namespaces each pod's description and each container's
# log (and its previous run's, after a restart), the events, and Minikube's
# own log. Used by CI when the end-to-end job fails; never fails itself.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"
trap - ERR
set +e

OUT=${1:-minikube-logs}
mkdir -p "$OUT"
say "writing to $OUT/"

capture() {
  local file=$1
  shift
  show "$@"
  "$@" >"$OUT/$file" 2>&1
  sed 's/^/      /' "$OUT/$file" | head -n 200
}

capture pods.txt "${KUBECTL[@]}" get pods -A -o wide
for ns in "$NAMESPACE" "$DAPR_NAMESPACE"; do
  capture "events-$ns.txt" "${KUBECTL[@]}" -n "$ns" get events --sort-by=.lastTimestamp
  for pod in $("${KUBECTL[@]}" -n "$ns" get pods -o 'jsonpath={.items[*].metadata.name}' 2>/dev/null); do
    capture "describe-$ns-$pod.txt" "${KUBECTL[@]}" -n "$ns" describe pod "$pod"
    for container in $("${KUBECTL[@]}" -n "$ns" get pod "$pod" -o 'jsonpath={.spec.initContainers[*].name} {.spec.containers[*].name}'); do
      capture "logs-$ns-$pod-$container.txt" "${KUBECTL[@]}" -n "$ns" logs "$pod" -c "$container" --tail 500
      "${KUBECTL[@]}" -n "$ns" logs "$pod" -c "$container" --previous --tail 500 \
        >"$OUT/logs-$ns-$pod-$container-previous.txt" 2>&1 ||
        rm -f "$OUT/logs-$ns-$pod-$container-previous.txt"
    done
  done
done
capture helm.txt "${HELM[@]}" list -A
show minikube -p "$MINIKUBE_PROFILE" logs
minikube -p "$MINIKUBE_PROFILE" logs >"$OUT/minikube.txt" 2>&1
say "saved in $OUT/"
exit 0

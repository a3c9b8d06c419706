#!/usr/bin/env bash
# Removes what up.sh made: by default the whole Minikube profile (the
# cluster, its images and volumes); with --keep-minikube only the chart's
# release and namespace and Dapr, leaving the cluster running. The `dapr`
# Helm repository entry up.sh added stays (`helm repo remove dapr` drops it).
# `--dry-run` prints the commands without running any.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"

KEEP_MINIKUBE=0
while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) DRY_RUN=1 ;;
    --keep-minikube) KEEP_MINIKUBE=1 ;;
    *)
      echo "usage: deploy/minikube/down.sh [--dry-run] [--keep-minikube]" >&2
      exit 2
      ;;
  esac
  shift
done

if [ "$KEEP_MINIKUBE" = 0 ]; then
  STEP_TOTAL=1
  step "delete the Minikube profile $MINIKUBE_PROFILE (cluster, images, volumes)" \
    "minikube profile list"
  need minikube "https://minikube.sigs.k8s.io/docs/start/"
  run minikube delete -p "$MINIKUBE_PROFILE"
  say "removed: profile $MINIKUBE_PROFILE and everything in it"
  exit 0
fi

STEP_TOTAL=3
step "uninstall the chart (release $RELEASE) and delete namespace $NAMESPACE (its volumes too)" \
  "kubectl --context $KUBE_CONTEXT -n $NAMESPACE get all,pvc"
need helm "https://helm.sh/docs/intro/install/"
need kubectl "https://kubernetes.io/docs/tasks/tools/"
if [ "$DRY_RUN" = 1 ] || "${HELM[@]}" -n "$NAMESPACE" status "$RELEASE" >/dev/null 2>&1; then
  run "${HELM[@]}" uninstall "$RELEASE" --namespace "$NAMESPACE" --wait --timeout 5m
else
  say "release $RELEASE is not installed"
fi
run "${KUBECTL[@]}" delete namespace "$NAMESPACE" --ignore-not-found --wait --timeout 5m

step "uninstall Dapr and delete namespace $DAPR_NAMESPACE" \
  "kubectl --context $KUBE_CONTEXT -n $DAPR_NAMESPACE get all"
if [ "$DRY_RUN" = 1 ] || "${HELM[@]}" -n "$DAPR_NAMESPACE" status dapr >/dev/null 2>&1; then
  run "${HELM[@]}" uninstall dapr --namespace "$DAPR_NAMESPACE" --wait --timeout 5m
else
  say "release dapr is not installed"
fi
run "${KUBECTL[@]}" delete namespace "$DAPR_NAMESPACE" --ignore-not-found --wait --timeout 5m

step "delete the Dapr CRDs (Helm keeps a chart's CRDs on uninstall)" \
  "kubectl --context $KUBE_CONTEXT get crd | grep dapr.io"
if [ "$DRY_RUN" = 1 ]; then
  show "${KUBECTL[@]}" get crd -o name '|' grep '\.dapr\.io$' '|' xargs kubectl delete
else
  crds=$("${KUBECTL[@]}" get crd -o name | grep '\.dapr\.io$' || true)
  if [ -n "$crds" ]; then
    # One name per line, no spaces: word splitting is wanted here.
    # shellcheck disable=SC2086
    run "${KUBECTL[@]}" delete $crds
  fi
fi
say "removed: release $RELEASE, Dapr, namespaces $NAMESPACE and $DAPR_NAMESPACE; Minikube keeps running"

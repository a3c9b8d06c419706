#!/usr/bin/env bash
# Brings the Todo platform up on Minikube: checks the tools and the CPU and
# memory Minikube gets, starts Minikube (profile todo-platform), installs Dapr
# 1.18.2 from its official Helm chart, builds the six images inside Minikube,
# installs the chart deploy/helm/todo-platform with values-minikube.yaml (its
# own PostgreSQL and single-node Kafka), times how long the five services take
# to be ready (SC-001: within 60 s), then runs the chart's `helm test` and
# smoke.sh. See README, "Deploy on Minikube". `--dry-run` prints every command
# without running any.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"

# What Minikube is given; the check refuses less than the minimum.
: "${MINIKUBE_CPUS:=4}"
: "${MINIKUBE_MEMORY:=8192}"
: "${MINIKUBE_DRIVER:=}"
: "${KUBERNETES_VERSION:=}"
# How the images are built: docker (the host's docker + buildx against
# Minikube's daemon), minikube (`minikube image build`), or auto (docker
# when the host has docker with buildx).
: "${IMAGE_BUILDER:=auto}"
MIN_CPUS=2
MIN_MEMORY=6144
# Seconds for everything to be ready before up.sh gives up (not SC-001's 60).
: "${READY_TIMEOUT:=600}"
SC001_SECONDS=60
# 1: fail when the five services take longer than SC001_SECONDS.
: "${SC001_ENFORCE:=0}"
CHART="$ROOT/deploy/helm/todo-platform"
TARGETS=(todo-service audit-service websocket-service notification-service recurring-task-service todo-admin)

usage() {
  cat <<EOF
usage: deploy/minikube/up.sh [--dry-run] [--skip-build] [--skip-smoke]

  --dry-run     print every step and command, run nothing
  --skip-build  use the images already in Minikube (todo-platform/<target>:$IMAGE_TAG)
  --skip-smoke  run neither helm test nor smoke.sh at the end

Settings (environment): MINIKUBE_PROFILE=$MINIKUBE_PROFILE MINIKUBE_CPUS=$MINIKUBE_CPUS
MINIKUBE_MEMORY=$MINIKUBE_MEMORY (MB) MINIKUBE_DRIVER=${MINIKUBE_DRIVER:-<chosen by minikube>}
KUBERNETES_VERSION=${KUBERNETES_VERSION:-<the default of minikube>} NAMESPACE=$NAMESPACE RELEASE=$RELEASE
DAPR_VERSION=$DAPR_VERSION READY_TIMEOUT=$READY_TIMEOUT (s) IMAGE_BUILDER=$IMAGE_BUILDER
SC001_ENFORCE=$SC001_ENFORCE (1: fail when the services take more than 60 s)
EOF
}

SKIP_BUILD=0
SKIP_SMOKE=0
while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) DRY_RUN=1 ;;
    --skip-build) SKIP_BUILD=1 ;;
    --skip-smoke) SKIP_SMOKE=1 ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      usage >&2
      exit 2
      ;;
  esac
  shift
done
export DRY_RUN

STEP_TOTAL=9
STARTED=$SECONDS

# Memory of this machine in MB (Linux or macOS), or nothing if unknown.
host_memory_mb() {
  if [ -r /proc/meminfo ]; then
    awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo
  elif command -v sysctl >/dev/null 2>&1; then
    sysctl -n hw.memsize 2>/dev/null | awk '{ print int($1 / 1048576) }'
  fi
}

host_cpus() {
  getconf _NPROCESSORS_ONLN 2>/dev/null || sysctl -n hw.ncpu 2>/dev/null || true
}

step "check the tools and the CPU and memory Minikube needs" \
  "minikube profile list; minikube config view"
need minikube "https://minikube.sigs.k8s.io/docs/start/"
need kubectl "https://kubernetes.io/docs/tasks/tools/ (or alias kubectl='minikube kubectl --')"
need helm "https://helm.sh/docs/intro/install/ (Helm 3)"
for tool in jq curl openssl timeout base64 od; do
  need "$tool" "install it with your package manager (jq, curl, openssl, coreutils)"
done
say "Minikube needs $MINIKUBE_CPUS CPUs and $MINIKUBE_MEMORY MB (MINIKUBE_CPUS, MINIKUBE_MEMORY; at least $MIN_CPUS and $MIN_MEMORY MB):"
say "the Dapr control plane, PostgreSQL, Kafka, five services with their sidecars, and the Rust build of the images"
if [ "$MINIKUBE_CPUS" -lt "$MIN_CPUS" ] || [ "$MINIKUBE_MEMORY" -lt "$MIN_MEMORY" ]; then
  die "MINIKUBE_CPUS=$MINIKUBE_CPUS MINIKUBE_MEMORY=$MINIKUBE_MEMORY is below the minimum of $MIN_CPUS CPUs and $MIN_MEMORY MB"
fi
if [ "$DRY_RUN" != 1 ]; then
  # With the docker driver Minikube gets its share of what Docker has (on
  # macOS and Windows a VM of its own), not of the machine.
  where="this machine"
  cpus=$(host_cpus)
  memory=$(host_memory_mb)
  if [ "$MINIKUBE_DRIVER" = docker ]; then
    where="Docker"
    read -r cpus memory <<<"$(docker info --format '{{.NCPU}} {{.MemTotal}}' | awk '{ print $1, int($2 / 1048576) }')"
  fi
  say "$where: ${cpus:-?} CPUs, ${memory:-?} MB"
  if [ -n "$cpus" ] && [ "$cpus" -lt "$MINIKUBE_CPUS" ]; then
    die "$where has $cpus CPUs, Minikube is to get $MINIKUBE_CPUS: set MINIKUBE_CPUS=$cpus (at least $MIN_CPUS)"
  fi
  if [ -n "$memory" ] && [ "$memory" -lt "$MINIKUBE_MEMORY" ]; then
    die "$where has $memory MB, Minikube is to get $MINIKUBE_MEMORY: lower MINIKUBE_MEMORY (at least $MIN_MEMORY)"
  fi
fi

step "start Minikube (profile $MINIKUBE_PROFILE)" \
  "minikube -p $MINIKUBE_PROFILE logs | tail -n 100; minikube -p $MINIKUBE_PROFILE status"
running=""
if [ "$DRY_RUN" != 1 ]; then
  running=$(minikube profile list -o json 2>/dev/null |
    jq -r --arg p "$MINIKUBE_PROFILE" '(.valid // [])[] | select(.Name == $p and .Status == "Running") | "\(.Config.CPUs) \(.Config.Memory)"' ||
    true)
fi
if [ -n "$running" ]; then
  read -r have_cpus have_memory <<<"$running"
  say "already running with $have_cpus CPUs and $have_memory MB"
  if [ "$have_cpus" -lt "$MIN_CPUS" ] || [ "$have_memory" -lt "$MIN_MEMORY" ]; then
    die "profile $MINIKUBE_PROFILE runs with $have_cpus CPUs and $have_memory MB, below $MIN_CPUS and $MIN_MEMORY MB: deploy/minikube/down.sh, then up.sh again"
  fi
else
  start=(minikube start -p "$MINIKUBE_PROFILE" --cpus "$MINIKUBE_CPUS" --memory "$MINIKUBE_MEMORY" --container-runtime docker)
  if [ -n "$MINIKUBE_DRIVER" ]; then
    start+=(--driver "$MINIKUBE_DRIVER")
  fi
  if [ -n "$KUBERNETES_VERSION" ]; then
    start+=(--kubernetes-version "$KUBERNETES_VERSION")
  fi
  run "${start[@]}"
fi
# values-minikube.yaml routes the Todo API and the WebSocket stream through
# the ingress addon (http://todo.local) and lets its namespace past the
# NetworkPolicy; enabling waits for its controller (and admission webhook).
run minikube -p "$MINIKUBE_PROFILE" addons enable ingress
# The chart's Ingress drops the headers of calls between services
# (dapr-api-token, dapr-caller-app-id, X-On-Behalf-Of) with a configuration
# snippet; ingress-nginx admits snippets only when its controller allows them.
run "${KUBECTL[@]}" -n ingress-nginx patch configmap ingress-nginx-controller --type merge \
  -p '{"data":{"allow-snippet-annotations":"true","annotations-risk-level":"Critical"}}'
run "${KUBECTL[@]}" get nodes -o wide

step "install Dapr $DAPR_VERSION (official Helm chart, namespace $DAPR_NAMESPACE)" \
  "kubectl --context $KUBE_CONTEXT -n $DAPR_NAMESPACE get pods; kubectl --context $KUBE_CONTEXT -n $DAPR_NAMESPACE describe pods"
run helm repo add dapr https://dapr.github.io/helm-charts/ --force-update
run helm repo update dapr
# The scheduler is a 3-member etcd cluster whatever the HA setting; 1 GiB
# each is plenty on Minikube (the default asks for 16 GiB each).
run "${HELM[@]}" upgrade --install dapr dapr/dapr --version "$DAPR_VERSION" \
  --namespace "$DAPR_NAMESPACE" --create-namespace \
  --set dapr_scheduler.cluster.storageSize=1Gi \
  --wait --timeout 10m
run "${KUBECTL[@]}" -n "$DAPR_NAMESPACE" get pods

step "build the images inside Minikube" \
  "minikube -p $MINIKUBE_PROFILE image ls | grep $IMAGE_REPOSITORY"
if [ "$SKIP_BUILD" = 1 ]; then
  say "skipped (--skip-build): using the images already in Minikube"
else
  # The build context is the repository's files as git sees them (tracked, or
  # new and not ignored): never target/ or .state/, which can be gigabytes,
  # whatever .dockerignore says. Outside a git checkout, the folder itself.
  context=$ROOT
  if [ "$DRY_RUN" = 1 ]; then
    context=CONTEXT
    show git -C "$ROOT" ls-files -co --exclude-standard
    say "CONTEXT: a copy of the files git lists"
  elif git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
    context=$(mktemp -d)
    trap 'rm -rf "$context"' EXIT
    say "build context: the files git lists, copied to $context"
    git -C "$ROOT" ls-files -z -co --exclude-standard |
      while IFS= read -r -d '' file; do
        if [ -e "$ROOT/$file" ]; then
          printf '%s\0' "$file"
        fi
      done |
      tar -C "$ROOT" --null -T - -cf - | tar -C "$context" -xf -
  fi
  # The Dockerfile needs BuildKit (the legacy builder would also build its
  # unused `binaries-prebuilt` stage, which copies binaries the context may
  # lack). The host's docker with buildx, pointed at Minikube's Docker daemon
  # (`minikube docker-env`), is BuildKit for sure; `minikube image build` is
  # asked for it with DOCKER_BUILDKIT=1, which needs buildx inside Minikube.
  builder=$IMAGE_BUILDER
  if [ "$builder" = auto ]; then
    if command -v docker >/dev/null 2>&1 && docker buildx version >/dev/null 2>&1; then
      builder=docker
    else
      builder=minikube
    fi
  fi
  say "builder: $builder (IMAGE_BUILDER=docker|minikube chooses)"
  case $builder in
    docker)
      # Printed as typed, not expanded.
      # shellcheck disable=SC2016
      printf '    $ eval "$(minikube -p %s docker-env --shell bash)"\n' "$MINIKUBE_PROFILE"
      if [ "$DRY_RUN" != 1 ]; then
        eval "$(minikube -p "$MINIKUBE_PROFILE" docker-env --shell bash)"
      fi
      for target in "${TARGETS[@]}"; do
        # BINARIES=source (the default) compiles in the builder stage; the
        # first target builds it, the others reuse its layers.
        run docker build --load --target "$target" -t "$IMAGE_REPOSITORY/$target:$IMAGE_TAG" "$context"
      done
      ;;
    minikube)
      for target in "${TARGETS[@]}"; do
        run minikube -p "$MINIKUBE_PROFILE" image build -t "$IMAGE_REPOSITORY/$target:$IMAGE_TAG" \
          --build-opt "target=$target" --build-env DOCKER_BUILDKIT=1 "$context"
      done
      ;;
    *) die "IMAGE_BUILDER must be auto, docker or minikube, not $IMAGE_BUILDER" ;;
  esac
fi
if [ "$DRY_RUN" != 1 ]; then
  minikube -p "$MINIKUBE_PROFILE" image ls | grep -F "$IMAGE_REPOSITORY/" || true
fi

step "pull the other images the deployment uses (before the clock starts)" \
  "minikube -p $MINIKUBE_PROFILE image ls"
# Kafka, PostgreSQL and the Dapr sidecar come from registries: pulled now,
# SC-001's 60 s measure the deployment, not the network.
values=(-f "$CHART/values-minikube.yaml" --set "image.repository=$IMAGE_REPOSITORY" --set "image.tag=$IMAGE_TAG")
images=("ghcr.io/dapr/daprd:$DAPR_VERSION")
if [ "$DRY_RUN" = 1 ]; then
  show helm template "$RELEASE" "$CHART" --namespace "$NAMESPACE" "${values[@]}"
else
  # Rendered for the cluster's version (the chart asks for 1.29 or newer).
  server=$("${KUBECTL[@]}" version -o json | jq -r .serverVersion.gitVersion)
  show helm template "$RELEASE" "$CHART" --namespace "$NAMESPACE" --kube-version "$server" "${values[@]}"
  rendered=$(helm template "$RELEASE" "$CHART" --namespace "$NAMESPACE" --kube-version "$server" "${values[@]}")
  while IFS= read -r image; do
    images+=("$image")
  done < <(sed -n 's/^[[:space:]-]*image:[[:space:]]*//p' <<<"$rendered" | tr -d "\"'" |
    grep -v "^$IMAGE_REPOSITORY/" | sort -u)
fi
for image in "${images[@]}"; do
  run minikube -p "$MINIKUBE_PROFILE" image pull "$image"
done

step "install the chart (release $RELEASE, namespace $NAMESPACE, values-minikube.yaml)" \
  "helm --kube-context $KUBE_CONTEXT -n $NAMESPACE status $RELEASE; kubectl --context $KUBE_CONTEXT -n $NAMESPACE get events --sort-by=.lastTimestamp"
DEPLOY_STARTED=$SECONDS
run "${HELM[@]}" upgrade --install "$RELEASE" "$CHART" --namespace "$NAMESPACE" --create-namespace "${values[@]}"

step "wait until every workload is ready and time it (SC-001: five services ready within ${SC001_SECONDS} s)" \
  "kubectl --context $KUBE_CONTEXT -n $NAMESPACE get pods; kubectl --context $KUBE_CONTEXT -n $NAMESPACE describe pods"
deadline=$((DEPLOY_STARTED + READY_TIMEOUT))
# Waits for one workload's rollout within what is left until the deadline.
wait_rollout() {
  local left=$((deadline - SECONDS))
  if [ "$left" -lt 1 ]; then
    left=1
  fi
  run "${KUBECTL[@]}" -n "$NAMESPACE" rollout status "$1" --timeout "${left}s"
}
for service in "${SERVICES[@]}"; do
  inspect_with "kubectl --context $KUBE_CONTEXT -n $NAMESPACE describe deploy/$service; kubectl --context $KUBE_CONTEXT -n $NAMESPACE logs deploy/$service -c $service; kubectl --context $KUBE_CONTEXT -n $NAMESPACE logs deploy/$service -c daprd"
  wait_rollout "deployment/$service"
done
SERVICES_READY=$((SECONDS - DEPLOY_STARTED))
# Then every other workload (PostgreSQL, Kafka): waiting on workloads, not on
# pods, since a Job's pod ends Succeeded and is never ready.
workloads=()
if [ "$DRY_RUN" = 1 ]; then
  show "${KUBECTL[@]}" -n "$NAMESPACE" get deployments,statefulsets -o name
else
  while IFS= read -r workload; do
    workloads+=("$workload")
  done < <("${KUBECTL[@]}" -n "$NAMESPACE" get deployments,statefulsets -o name)
fi
for workload in "${workloads[@]+"${workloads[@]}"}"; do
  inspect_with "kubectl --context $KUBE_CONTEXT -n $NAMESPACE describe $workload; kubectl --context $KUBE_CONTEXT -n $NAMESPACE logs $workload --all-containers"
  wait_rollout "$workload"
done
ALL_READY=$((SECONDS - DEPLOY_STARTED))
inspect_with "kubectl --context $KUBE_CONTEXT -n $NAMESPACE get pods; kubectl --context $KUBE_CONTEXT -n $NAMESPACE describe pods"
run "${KUBECTL[@]}" -n "$NAMESPACE" get pods -o wide
if [ "$DRY_RUN" != 1 ]; then
  if [ "$SERVICES_READY" -le "$SC001_SECONDS" ]; then
    verdict="met"
  else
    verdict="MISSED"
  fi
  say "the five services were ready (readiness: /health/ready, sidecar included) ${SERVICES_READY} s after helm install"
  say "every Deployment and StatefulSet was ready ${ALL_READY} s after helm install"
  say "SC-001 (${SC001_SECONDS} s): $verdict"
  if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
    printf '**SC-001** (%s s): %s. The five services ready %s s after helm install, every workload %s s.\n' \
      "$SC001_SECONDS" "$verdict" "$SERVICES_READY" "$ALL_READY" >>"$GITHUB_STEP_SUMMARY"
  fi
  if [ "$verdict" = MISSED ] && [ "$SC001_ENFORCE" = 1 ]; then
    die "SC-001 missed: the five services took ${SERVICES_READY} s (SC001_ENFORCE=1)"
  fi
fi

step "the chart's own tests (helm test: readiness, create -> audit -> WebSocket)" \
  "kubectl --context $KUBE_CONTEXT -n $NAMESPACE get pods; kubectl --context $KUBE_CONTEXT -n $NAMESPACE logs -l helm.sh/hook --all-containers --prefix"
if [ "$SKIP_SMOKE" = 1 ]; then
  say "skipped (--skip-smoke)"
else
  run "${HELM[@]}" test "$RELEASE" --namespace "$NAMESPACE" --logs --timeout 5m
fi

step "smoke test (smoke.sh)" "deploy/minikube/smoke.sh; deploy/minikube/logs.sh"
if [ "$SKIP_SMOKE" = 1 ]; then
  say "skipped (--skip-smoke)"
else
  run "$HERE/smoke.sh"
fi

say ""
say "up in $((SECONDS - STARTED)) s. The services: kubectl --context $KUBE_CONTEXT -n $NAMESPACE get pods,svc"
say "try the API: kubectl --context $KUBE_CONTEXT -n $NAMESPACE port-forward svc/todo-service 8001:8001, then http://127.0.0.1:8001/docs"
say "remove everything: deploy/minikube/down.sh"

# shellcheck shell=bash
# Shared by up.sh, smoke.sh, down.sh and logs.sh (sourced, never run): the
# settings every script agrees on, numbered steps, command echo with a
# --dry-run mode, and the failure report that names the step and the command
# to inspect it. Also the two pieces of smoke.sh that need no cluster and are
# tested on their own (xtask/src/deploy_check/minikube.rs): minting an HS256
# token with openssl, and reading a WebSocket stream with bash's /dev/tcp.

# The names the chart and the scripts share (override any from the shell).
: "${MINIKUBE_PROFILE:=todo-platform}"
: "${KUBE_CONTEXT:=$MINIKUBE_PROFILE}"
: "${NAMESPACE:=todo-dev}"
: "${RELEASE:=todo}"
: "${DAPR_NAMESPACE:=dapr-system}"
: "${DAPR_VERSION:=1.18.2}"
: "${IMAGE_REPOSITORY:=todo-platform}"
: "${IMAGE_TAG:=0.1.0}"
: "${SIGNING_SECRET:=auth-signing-key}"
: "${DRY_RUN:=0}"

if [ "${BASH_VERSINFO[0]}" -lt 4 ]; then
  echo "these scripts need bash 4 or newer (this is $BASH_VERSION; on macOS: brew install bash)" >&2
  exit 1
fi

# The five services: app id (= Deployment, Service and container name) and
# port; with the command arrays, used by the scripts that source this file.
# shellcheck disable=SC2034
SERVICES=(todo-service audit-service websocket-service notification-service recurring-task-service)
# shellcheck disable=SC2034
PORTS=(8001 8002 8003 8004 8005)

# shellcheck disable=SC2034
KUBECTL=(kubectl --context "$KUBE_CONTEXT")
# shellcheck disable=SC2034
HELM=(helm --kube-context "$KUBE_CONTEXT")

SCRIPT_NAME=$(basename "$0" .sh)
STEP_NO=0
STEP_TOTAL=${STEP_TOTAL:-0}
STEP_NAME="start-up"
STEP_HINT=""

# Starts the next numbered step; `inspect` is the command that shows what
# went wrong if it fails.
step() {
  STEP_NO=$((STEP_NO + 1))
  STEP_NAME=$1
  STEP_HINT=${2:-}
  printf '\n==> [%s %d/%d] %s\n' "$SCRIPT_NAME" "$STEP_NO" "$STEP_TOTAL" "$STEP_NAME"
}

# Replaces the current step's inspect command (e.g. once a service is known).
inspect_with() {
  STEP_HINT=$1
}

say() {
  printf '    %s\n' "$*"
}

# Prints a command as it could be pasted into a shell.
show() {
  printf '    $'
  printf ' %q' "$@"
  printf '\n'
}

# Prints, then runs a command (only prints it with DRY_RUN=1).
run() {
  show "$@"
  if [ "$DRY_RUN" = 1 ]; then
    return 0
  fi
  "$@"
}

report_failure() {
  local code=$1 what=$2
  printf '\nFAILED: %s, step %d/%d "%s" (exit %d)\n' "$SCRIPT_NAME" "$STEP_NO" "$STEP_TOTAL" "$STEP_NAME" "$code" >&2
  printf '  while running: %s\n' "$what" >&2
  if [ -n "$STEP_HINT" ]; then
    printf '  inspect with:  %s\n' "$STEP_HINT" >&2
  fi
  printf '  everything at once: deploy/minikube/logs.sh\n' >&2
}

on_error() {
  local code=$?
  report_failure "$code" "$BASH_COMMAND"
  exit "$code"
}

# Stops the script with a message, naming the step that failed.
die() {
  printf '\nerror: %s\n' "$*" >&2
  report_failure 1 "a check of the step"
  exit 1
}

set -E
trap on_error ERR

# Fails unless `tool` is on PATH; `how` says how to get it.
need() {
  local tool=$1 how=$2
  if [ "$DRY_RUN" = 1 ]; then
    say "needs $tool"
    return 0
  fi
  if ! command -v "$tool" >/dev/null 2>&1; then
    die "$tool is not installed: $how"
  fi
  say "$tool: $(command -v "$tool")"
}

# base64url without padding, of stdin.
b64url() {
  base64 | tr -d '\n=' | tr '+/' '-_'
}

# Prints an HS256 JWT the services accept: `mint_jwt <key as hex> <user>
# <operator: 0|1> <ttl seconds>`, issuer and audience `todo-platform`, `sub`
# the user, `roles: ["operator"]` for an operator, `exp` now + ttl.
mint_jwt() {
  local key_hex=$1 user=$2 operator=$3 ttl=$4 now roles="" header payload signing signature
  now=$(date +%s)
  if [ "$operator" = 1 ]; then
    roles=',"roles":["operator"]'
  fi
  header=$(printf '%s' '{"alg":"HS256","typ":"JWT"}' | b64url)
  payload=$(printf '{"sub":"%s","iss":"todo-platform","aud":"todo-platform","iat":%d,"exp":%d%s}' \
    "$user" "$now" "$((now + ttl))" "$roles" | b64url)
  signing="$header.$payload"
  signature=$(printf '%s' "$signing" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$key_hex" -binary | b64url)
  printf '%s.%s\n' "$signing" "$signature"
}

# Hex of stdin's bytes (the signing key as openssl's hexkey takes it).
to_hex() {
  od -An -v -tx1 | tr -d ' \n'
}

# Opens a WebSocket to 127.0.0.1:<port><path> with `Authorization: Bearer
# <token>` and waits up to <seconds> for <needle> in what the server sends;
# prints the needle when seen. Fails (2) when the handshake is refused, (3)
# when the server closes first, or (124) when the needle did not come in time.
ws_expect() {
  local port=$1 path=$2 token=$3 needle=$4 seconds=$5 key
  key=$(openssl rand -base64 16)
  # The inner script gets its values as arguments, so single quotes are meant.
  # shellcheck disable=SC2016
  timeout "$seconds" bash -c '
    port=$1 path=$2 key=$3 token=$4 needle=$5
    exec 3<>"/dev/tcp/127.0.0.1/$port"
    printf "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: todo-updates\r\nAuthorization: Bearer %s\r\n\r\n" \
      "$path" "$port" "$key" "$token" >&3
    IFS= read -r status <&3
    case $status in
      "HTTP/1.1 101"*) ;;
      *) printf "WebSocket handshake refused: %s\n" "$status" | tr -d "\r" >&2; exit 2 ;;
    esac
    # Frames carry no newline, so read what arrives (up to 4 KiB or 1 s)
    # rather than lines; NUL bytes of frame headers are dropped by bash.
    seen=""
    while :; do
      chunk=""
      IFS= read -r -t 1 -N 4096 chunk <&3
      got=$?
      if [ "${#seen}" -gt 8192 ]; then
        seen=${seen: -8192}
      fi
      seen+=$chunk
      case $seen in
        *"$needle"*) printf "%s\n" "$needle"; exit 0 ;;
      esac
      if [ "$got" -ne 0 ] && [ "$got" -le 128 ]; then
        printf "the WebSocket closed before %s came\n" "$needle" >&2
        exit 3
      fi
    done
  ' ws_expect "$port" "$path" "$key" "$token" "$needle"
}

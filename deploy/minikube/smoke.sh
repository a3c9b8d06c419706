#!/usr/bin/env bash
# Smoke test of the platform on Minikube (run by up.sh; runs on its own too):
# forwards a local port to each of the five Services, mints a token for a
# fresh user from the chart's signing key, creates a task and sees its audit
# record and its WebSocket update, completes a daily recurring task and sees
# the next instance, then lists every service's readiness. `--dry-run`
# prints the steps and commands without running any.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"

# Local ports: LOCAL_PORT_BASE + 1 … + 5 for the five services.
: "${LOCAL_PORT_BASE:=18000}"
# How long each check waits for what it expects.
: "${SMOKE_TIMEOUT:=60}"

case ${1:-} in
  --dry-run) DRY_RUN=1 ;;
  "") ;;
  *)
    echo "usage: deploy/minikube/smoke.sh [--dry-run]" >&2
    exit 2
    ;;
esac

STEP_TOTAL=5
WORK=$(mktemp -d)
FORWARDS=()
# Ends the port-forwards; keeps their logs when the smoke test failed.
cleanup() {
  local code=$? pid
  for pid in "${FORWARDS[@]+"${FORWARDS[@]}"}"; do
    kill "$pid" 2>/dev/null || true
  done
  if [ "$code" = 0 ]; then
    rm -rf "$WORK"
  else
    printf '  port-forward logs kept in %s\n' "$WORK" >&2
  fi
}
trap cleanup EXIT

local_port() {
  local i
  for i in "${!SERVICES[@]}"; do
    if [ "${SERVICES[$i]}" = "$1" ]; then
      echo $((LOCAL_PORT_BASE + i + 1))
      return 0
    fi
  done
  return 1
}

# api <method> <service> <path> [<json body>]: calls the service as $TOKEN;
# sets BODY and CODE (the HTTP status).
api() {
  local method=$1 service=$2 path=$3 port out
  local args=(-sS -X "$method" -H "Authorization: Bearer $TOKEN" -w '\n%{http_code}')
  if [ $# -ge 4 ]; then
    args+=(-H 'content-type: application/json' --data "$4")
  fi
  port=$(local_port "$service")
  out=$(curl "${args[@]}" "http://127.0.0.1:$port$path")
  CODE=${out##*$'\n'}
  BODY=${out%$'\n'*}
}

# expect_code <code…>: fails, showing the answer, unless CODE is one of them.
expect_code() {
  local c
  for c in "$@"; do
    if [ "$CODE" = "$c" ]; then
      return 0
    fi
  done
  die "expected HTTP $* but got $CODE: $BODY"
}

# until_ok <what> <function>: calls the function every second until it
# succeeds, for at most SMOKE_TIMEOUT seconds.
until_ok() {
  local what=$1 check=$2 waited=0
  until "$check"; do
    if [ "$waited" -ge "$SMOKE_TIMEOUT" ]; then
      die "$what: not seen within $SMOKE_TIMEOUT s"
    fi
    sleep 1
    waited=$((waited + 1))
  done
  say "$what: seen after ${waited} s"
}

# Prints an RFC 3339 UTC time of an epoch second (GNU or BSD date).
utc() {
  date -u -d "@$1" +%Y-%m-%dT%H:%M:%S.000Z 2>/dev/null || date -u -r "$1" +%Y-%m-%dT%H:%M:%S.000Z
}

ctx="kubectl --context $KUBE_CONTEXT -n $NAMESPACE"

step "forward local ports $((LOCAL_PORT_BASE + 1))-$((LOCAL_PORT_BASE + 5)) to the five Services" \
  "$ctx get svc,endpoints; $ctx get pods"
for i in "${!SERVICES[@]}"; do
  service=${SERVICES[$i]}
  port=$((LOCAL_PORT_BASE + i + 1))
  show "${KUBECTL[@]}" -n "$NAMESPACE" port-forward "svc/$service" "$port:${PORTS[$i]}"
  if [ "$DRY_RUN" != 1 ]; then
    "${KUBECTL[@]}" -n "$NAMESPACE" port-forward "svc/$service" "$port:${PORTS[$i]}" \
      >"$WORK/forward-$service.log" 2>&1 &
    FORWARDS+=($!)
  fi
done
if [ "$DRY_RUN" != 1 ]; then
  for service in "${SERVICES[@]}"; do
    port=$(local_port "$service")
    inspect_with "cat $WORK/forward-$service.log; $ctx logs deploy/$service -c $service"
    forwarded() { curl -fs -o /dev/null "http://127.0.0.1:$port/health"; }
    until_ok "$service /health on 127.0.0.1:$port" forwarded
  done
fi

step "mint a token for a fresh user from secret $SIGNING_SECRET (HS256, issuer and audience todo-platform)" \
  "$ctx get secret $SIGNING_SECRET -o yaml"
USER_ID="smoke-$(date +%s)-$RANDOM"
show "${KUBECTL[@]}" -n "$NAMESPACE" get secret "$SIGNING_SECRET" -o 'jsonpath={.data.key}'
if [ "$DRY_RUN" = 1 ]; then
  say "then: base64 -d | od (hex) | openssl dgst -sha256 -mac HMAC -macopt hexkey:… (see mint_jwt in lib.sh)"
  say "then, as that user: POST todo /api/v1/tasks; GET audit /api/v1/audit?task_id=…; WebSocket /ws?since=0;"
  say "POST todo /api/v1/tasks (daily) and …/complete; GET todo /api/v1/tasks until the next instance; GET /health/ready of each"
  exit 0
fi
encoded=$("${KUBECTL[@]}" -n "$NAMESPACE" get secret "$SIGNING_SECRET" -o 'jsonpath={.data.key}')
[ -n "$encoded" ] || die "secret $SIGNING_SECRET has no key \`key\`"
KEY_HEX=$(printf '%s' "$encoded" | base64 -d | to_hex)
TOKEN=$(mint_jwt "$KEY_HEX" "$USER_ID" 0 900)
say "user $USER_ID, token valid 15 minutes"

step "create a task; see its audit record and its WebSocket update" \
  "$ctx logs deploy/audit-service -c audit-service; $ctx logs deploy/websocket-service -c websocket-service; $ctx logs deploy/todo-service -c todo-service"
api POST todo-service /api/v1/tasks '{"title":"smoke test: a task"}'
expect_code 201
TASK_ID=$(jq -r .id <<<"$BODY")
say "created task $TASK_ID"
audited() {
  api GET audit-service "/api/v1/audit?task_id=$TASK_ID"
  [ "$CODE" = 200 ] && [ "$(jq -r '[.records[] | select(.event_type == "task-created")] | length' <<<"$BODY")" = 1 ]
}
until_ok "audit record task-created of $TASK_ID" audited
say "$(jq -c '.records[0] | {event_type, task_id, user_id, recorded_at}' <<<"$BODY")"
ws_port=$(local_port websocket-service)
show ws_expect "$ws_port" '/ws?since=0' '<token>' "$TASK_ID" "$SMOKE_TIMEOUT"
ws_expect "$ws_port" '/ws?since=0' "$TOKEN" "$TASK_ID" "$SMOKE_TIMEOUT" >/dev/null ||
  die "no WebSocket update naming task $TASK_ID on /ws?since=0 within $SMOKE_TIMEOUT s"
say "WebSocket update of $TASK_ID received"

step "complete a daily recurring task; see the next instance" \
  "$ctx logs deploy/recurring-task-service -c recurring-task-service; $ctx logs deploy/recurring-task-service -c daprd"
now=$(date -u +%s)
due=$(((now / 86400 + 1) * 86400 + 9 * 3600))
api POST todo-service /api/v1/tasks \
  "{\"title\":\"smoke test: stand-up\",\"due_date\":\"$(utc "$due")\",\"timezone\":\"UTC\",\"recurrence_schedule\":\"daily\"}"
expect_code 201
SERIES_TASK=$(jq -r .id <<<"$BODY")
say "created daily task $SERIES_TASK due $(utc "$due")"
api POST todo-service "/api/v1/tasks/$SERIES_TASK/complete"
expect_code 200
say "completed $SERIES_TASK"
next_instance() {
  api GET todo-service "/api/v1/tasks?limit=200"
  [ "$CODE" = 200 ] && NEXT=$(jq -c --arg p "$SERIES_TASK" '[.tasks[] | select(.parent_task_id == $p)] | first // empty' <<<"$BODY") && [ -n "$NEXT" ]
}
until_ok "next instance of $SERIES_TASK" next_instance
next_due=$(jq -r .due_date <<<"$NEXT")
say "$(jq -c '{id, title, status, due_date, parent_task_id}' <<<"$NEXT")"
[ "$next_due" = "$(utc $((due + 86400)))" ] || die "the next instance is due $next_due, expected $(utc $((due + 86400)))"

step "list the services' health (/health/ready)" "$ctx get pods; $ctx describe pods"
unhealthy=0
for service in "${SERVICES[@]}"; do
  port=$(local_port "$service")
  answer=$(curl -sS "http://127.0.0.1:$port/health/ready" || true)
  line=$(jq -r '"\(.status)  " + ([.checks[]? | "\(.name)=\(.status)"] | join(" "))' <<<"$answer" 2>/dev/null || echo "unreadable: $answer")
  printf '    %-24s %s\n' "$service" "$line"
  case $line in
    "ready "*) ;;
    *) unhealthy=1 ;;
  esac
done
[ "$unhealthy" = 0 ] || die "a service is not ready (above)"

say ""
say "smoke test passed"

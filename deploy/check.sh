#!/usr/bin/env bash
# docs/deploy.md, run for real on 127.0.0.1: (a) one server on PostgreSQL, started as the systemd unit
# starts it (deploy/stt-server.service + its EnvironmentFile); (b) 2 API servers + 2 workers on NATS
# JetStream behind HAProxy (deploy/haproxy.cfg). Files, live streams and a WebRTC session go through
# the load balancer, one worker is killed with -9 while files are in flight, and every result is
# checked. Exit 0 only if every check passed; everything started here is stopped on exit.
#
#   bash deploy/check.sh        (npm run deploy:check; CI runs it after the tests)
#
# Uses the PostgreSQL and NATS that are already running: DATABASE_URL (a role that may create
# databases; default the CI one) and NATS_URL (JetStream on). A throwaway database is created and
# dropped. Ports: DEPLOY_PORT_BASE (default 18080) … +20 on 127.0.0.1. Models: MODELS_DIR (default
# ../shared/models), model DEPLOY_MODEL (default whisper-mini-random).
set -euo pipefail
cd "$(dirname "$0")/.."
T0=$SECONDS

PG_ADMIN_URL=${DATABASE_URL:-${TEST_DATABASE_URL:-postgres://stt:stt@127.0.0.1:5432/stt_test}}
NATS_URL=${NATS_URL:-${TEST_NATS_URL:-nats://127.0.0.1:4222}}
MODELS_DIR=${MODELS_DIR:-$(cd .. && pwd)/shared/models}
MODEL=${DEPLOY_MODEL:-whisper-mini-random}
BASE=${DEPLOY_PORT_BASE:-18080}
ETC=$(mktemp -d -t stt-deploy-XXXXXX)
DB=stt_deploy_$$
LB_PORT=$BASE
API1_PORT=$((BASE + 1))
API2_PORT=$((BASE + 2))
WORKER1_PORT=$((BASE + 11))
WORKER2_PORT=$((BASE + 12))
ONE_PORT=$((BASE + 20))
LB=http://127.0.0.1:$LB_PORT
# Workers take 2 × MAX_BATCH_SIZE chunks at a time; small batches keep 2 cores responsive.
export WORKER_MAX_BATCH_SIZE=2
unset DATABASE_URL

declare -A PIDS=()
SUMMARY=()
DB_CREATED=false

cleanup() {
  local rc=$?
  for name in "${!PIDS[@]}"; do kill -TERM "${PIDS[$name]}" 2>/dev/null || true; done
  for name in "${!PIDS[@]}"; do
    # SIGTERM drains (SHUTDOWN_TIMEOUT_S=10 here); then -9.
    for _ in $(seq 1 60); do kill -0 "${PIDS[$name]}" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "${PIDS[$name]}" 2>/dev/null || true
  done
  if $DB_CREATED; then dropdb --force --maintenance-db="$PG_ADMIN_URL" "$DB" || echo "could not drop database $DB" >&2; fi
  if [ "$rc" -ne 0 ]; then
    echo "---- logs (last 30 lines each) in $ETC" >&2
    for f in "$ETC"/*.log; do [ -f "$f" ] && { echo "== $f" >&2; tail -n 30 "$f" >&2; }; done
    echo "FAILED after $((SECONDS - T0)) s" >&2
  else
    rm -rf "$ETC"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
  echo "FAIL $*" >&2
  exit 1
}
pass() {
  echo "PASS $*"
  SUMMARY+=("$*")
}

# Start a process in the background like the unit does: its EnvironmentFile, then its ExecStart.
EXEC_START=$(sed -n 's/^ExecStart=//p' deploy/stt-server.service)
start_unit() {
  local name=$1 env_file=$2
  (
    set -a
    # shellcheck disable=SC1090
    . "$env_file"
    set +a
    exec $EXEC_START
  ) >"$ETC/$name.log" 2>&1 &
  PIDS[$name]=$!
}

wait_health() {
  local name=$1 url=$2
  for _ in $(seq 1 360); do
    if curl -fsS -o /dev/null "$url/health" 2>/dev/null; then return 0; fi
    if [ -n "${PIDS[$name]:-}" ] && ! kill -0 "${PIDS[$name]}" 2>/dev/null; then fail "$name exited before /health answered (log: $ETC/$name.log)"; fi
    sleep 0.5
  done
  fail "$name: $url/health did not answer within 180 s"
}

clients() { node --import tsx deploy/check-clients.ts "$@"; }

# A transcript from /v1/transcribe: HTTP 200 and a non-empty text.
check_transcript() {
  node -e 'const j=JSON.parse(require("fs").readFileSync(0,"utf8")); if(!(typeof j.text==="string"&&j.text.trim()&&j.segments.length)) {console.error(JSON.stringify(j).slice(0,300)); process.exit(1)}'
}

echo "== 0. tools, templates and the doc"
for tool in haproxy psql createdb dropdb curl node systemd-analyze; do command -v "$tool" >/dev/null || fail "$tool is not installed"; done
for port in $LB_PORT $API1_PORT $API2_PORT $WORKER1_PORT $WORKER2_PORT $ONE_PORT; do
  if (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then fail "port $port is in use (set DEPLOY_PORT_BASE)"; fi
done
[ -d "$MODELS_DIR/$MODEL" ] || fail "model $MODEL not in MODELS_DIR=$MODELS_DIR"
systemd-analyze verify deploy/stt-server.service
haproxy -c -q -f deploy/haproxy.cfg
# Every command of docs/deploy.md's ```sh blocks is a line of this script (this is what runs them).
missing=$(awk '/^```sh$/{on=1;next} /^```/{on=0} on && NF && $1 !~ /^#/' docs/deploy.md | sed 's/^ *//' | while IFS= read -r line; do grep -qxF -- "$line" <(sed 's/^ *//' "$0") || echo "$line"; done)
[ -z "$missing" ] || fail "docs/deploy.md runs commands that deploy/check.sh does not: $missing"
pass "templates: systemd-analyze verify, haproxy -c; every docs/deploy.md command is in check.sh"
clients audio "$ETC/short.wav" 10
clients audio "$ETC/long.wav" 45
clients audio "$ETC/kill.wav" 120 # enough chunks that both workers are saturated when one is killed

echo "== (a) one server on PostgreSQL, started as the systemd unit starts it"
createdb --maintenance-db="$PG_ADMIN_URL" "$DB"
DB_CREATED=true
DATABASE_URL="${PG_ADMIN_URL%/*}/$DB"
cp deploy/stt-server.env.example "$ETC/one.env"
echo "HOST=127.0.0.1" >>"$ETC/one.env"
echo "PORT=$ONE_PORT" >>"$ETC/one.env"
echo "DATABASE_URL=$DATABASE_URL" >>"$ETC/one.env"
echo "DATA_DIR=$ETC/one" >>"$ETC/one.env"
echo "MODELS_DIR=$MODELS_DIR" >>"$ETC/one.env"
echo "DEFAULT_MODEL=$MODEL" >>"$ETC/one.env"
# This machine: 2 shared cores; a bounded drain so that cleanup is quick.
printf '%s\n' INFERENCE_THREADS=1 LLM_THREADS=1 SHUTDOWN_TIMEOUT_S=10 STREAM_MAX_FINAL_WAIT_MS=0 STREAM_MAX_LOAD=0 >>"$ETC/one.env"
start_unit one "$ETC/one.env"
wait_health one "http://127.0.0.1:$ONE_PORT"
KEY=$(DATABASE_URL="$DATABASE_URL" npm run -s admin -- create-account --email ops@example.com --plan paid --credits 600 | sed -n 's/^api key.*: //p')
[ -n "$KEY" ] || fail "admin create-account printed no key"
curl -fsS -H "Authorization: Bearer $KEY" -F file=@"$ETC/short.wav" -F model="$MODEL" -F temperature=0 -F max_new_tokens=16 "http://127.0.0.1:$ONE_PORT/v1/transcribe" | check_transcript
kill -TERM "${PIDS[one]}"
wait "${PIDS[one]}" || fail "the single server did not exit 0 on SIGTERM (log: $ETC/one.log)"
unset 'PIDS[one]'
pass "(a) one server on PostgreSQL: /health, account via npm run admin, /v1/transcribe 200 with a transcript, SIGTERM → exit 0"

echo "== (b) 2 API servers + 2 workers on NATS JetStream behind HAProxy"
for name in api1 api2 worker1 worker2; do
  cp "$ETC/one.env" "$ETC/$name.env"
  echo "DATA_DIR=$ETC/$name" >>"$ETC/$name.env"
  echo "NATS_URL=$NATS_URL" >>"$ETC/$name.env"
  echo "WORK_QUEUE=nats" >>"$ETC/$name.env"
  # A killed worker's chunks go to another worker after this long without an ack (default 60 s).
  echo "WORK_ACK_WAIT_S=5" >>"$ETC/$name.env"
done
echo "PORT=$API1_PORT" >>"$ETC/api1.env"
echo "PORT=$API2_PORT" >>"$ETC/api2.env"
echo "PORT=$WORKER1_PORT" >>"$ETC/worker1.env"
echo "PORT=$WORKER2_PORT" >>"$ETC/worker2.env"
echo "WORKER=false" >>"$ETC/api1.env"
echo "WORKER=false" >>"$ETC/api2.env"
echo "WORKER=true" >>"$ETC/worker1.env"
echo "WORKER=true" >>"$ETC/worker2.env"
echo "MAX_BATCH_SIZE=$WORKER_MAX_BATCH_SIZE" >>"$ETC/worker1.env"
echo "MAX_BATCH_SIZE=$WORKER_MAX_BATCH_SIZE" >>"$ETC/worker2.env"
start_unit worker1 "$ETC/worker1.env"
start_unit worker2 "$ETC/worker2.env"
start_unit api1 "$ETC/api1.env"
start_unit api2 "$ETC/api2.env"
export STT_LB_BIND=127.0.0.1:$LB_PORT STT_API1=127.0.0.1:$API1_PORT STT_API2=127.0.0.1:$API2_PORT
haproxy -W -db -f deploy/haproxy.cfg >"$ETC/haproxy.log" 2>&1 &
PIDS[haproxy]=$!
for name in worker1 worker2 api1 api2; do wait_health "$name" "http://127.0.0.1:$(sed -n 's/^PORT=//p' "$ETC/$name.env" | tail -1)"; done
wait_health haproxy "$LB"
curl -fsS -H "Authorization: Bearer $KEY" -F file=@"$ETC/short.wav" -F model="$MODEL" -F temperature=0 -F max_new_tokens=16 "$LB/v1/transcribe" | check_transcript
pass "(b) 4 servers and HAProxy up after $((SECONDS - T0)) s; a curl upload through the load balancer → 200 with a transcript"

run_check() {
  local out
  out=$(clients "$@" 2>&1) || fail "$1: $out"
  echo "$out"
  SUMMARY+=("${out#PASS }")
}
run_check files --lb "$LB" --key "$KEY" --wav "$ETC/short.wav" --count 4
run_check job --lb "$LB" --key "$KEY" --wav "$ETC/long.wav"
run_check streams --lb "$LB" --key "$KEY" --count 2
run_check webrtc --lb "$LB" --key "$KEY"

echo "== (d) kill -9 a worker while files are in flight"
run_check kill --lb "$LB" --key "$KEY" --wav "$ETC/kill.wav" --count 4 \
  --apis "http://127.0.0.1:$API1_PORT,http://127.0.0.1:$API2_PORT" \
  --victim "http://127.0.0.1:$WORKER1_PORT" --victim-pid "${PIDS[worker1]}" --survivor "http://127.0.0.1:$WORKER2_PORT"
unset 'PIDS[worker1]'

echo
echo "== deploy check: all passed in $((SECONDS - T0)) s"
for line in "${SUMMARY[@]}"; do echo "  - $line"; done

#!/bin/bash
# Quickstart: from a fresh clone on Debian 12 (as root) to a PostgreSQL DSN that answers.
#   1. sets the machine up the way the test suite does: scripts/test-env.sh (Docker, the local
#      PostgreSQL image sqlrs-local/postgres:15 built from the host's postgresql-15, psql, ...);
#      then curl and jq if they are missing;
#   2. installs and builds the engine: npm ci && npm run build;
#   3. starts the engine in the background, detached from this terminal (or reuses the one already
#      running for the same directory);
#   4. prepares examples/quickstart/schema.sql + data.sql, printing the job's events as they arrive
#      (status, task and log lines);
#   5. runs a query through the DSN with the host's psql and prints the DSN.
# The engine is left running; the last lines say how to delete the instance and stop the engine.
# Running it again reuses the engine and the cached states: only a new instance is started.
#
# env: SQLRS_QUICKSTART_DIR      where engine.json, logs/ and state-store/ go
#                                (default ~/.local/state/sqlrs, where the sqlrs CLI looks)
#      SQLRS_QUICKSTART_LISTEN   the engine's address (default 127.0.0.1:0, a free port)
#      SQLRS_QUICKSTART_IMAGE    the base image (default sqlrs-local/postgres:15)
#      SQLRS_QUICKSTART_SETUP=0  skip step 1 (the machine is set up already)
#      SQLRS_QUICKSTART_BUILD=0  skip step 2 (dist/ is built already)
#      SQLRS_QUICKSTART_TIMEOUT  seconds to wait for the engine to start and for the job (default 300)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=${SQLRS_QUICKSTART_DIR:-$HOME/.local/state/sqlrs}
LISTEN=${SQLRS_QUICKSTART_LISTEN:-127.0.0.1:0}
IMAGE=${SQLRS_QUICKSTART_IMAGE:-sqlrs-local/postgres:15}
TIMEOUT=${SQLRS_QUICKSTART_TIMEOUT:-300}
EXAMPLE=$ROOT/examples/quickstart

step() { printf '\nquickstart: == %s\n' "$*"; }
say() { printf 'quickstart: %s\n' "$*"; }
die() { printf 'quickstart: error: %s\n' "$*" >&2; exit 1; }

cd "$ROOT"
command -v node >/dev/null || die "node is not installed (the engine needs Node.js 20)"
node -e 'process.exit(Number(process.versions.node.split(".")[0]) === 20 ? 0 : 1)' \
  || die "the engine needs Node.js 20, this is $(node --version)"

# 1. The machine.
if [ "${SQLRS_QUICKSTART_SETUP:-1}" != 0 ]; then
  step "1/5 setting up the machine (scripts/test-env.sh)"
  [ "$(id -u)" = 0 ] || die "must run as root to set the machine up (or set SQLRS_QUICKSTART_SETUP=0)"
  # Only what the engine needs: the test-only Podman service and browser are left out.
  SQLRS_TEST_PODMAN=0 SQLRS_TEST_BROWSER=0 bash "$ROOT/scripts/test-env.sh"
  need=()
  for tool in curl jq; do command -v "$tool" >/dev/null || need+=("$tool"); done
  if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
      || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
  fi
else
  step "1/5 machine set-up skipped (SQLRS_QUICKSTART_SETUP=0)"
fi
for tool in curl jq psql; do
  command -v "$tool" >/dev/null || die "$tool is missing (scripts/test-env.sh installs it)"
done

# 2. The engine's code.
if [ "${SQLRS_QUICKSTART_BUILD:-1}" != 0 ]; then
  step "2/5 installing and building the engine (npm ci && npm run build)"
  npm ci --no-audit --no-fund
  npm run build
else
  step "2/5 build skipped (SQLRS_QUICKSTART_BUILD=0)"
  [ -f "$ROOT/dist/main.js" ] || die "dist/ is not built: run npm ci && npm run build"
fi

# 3. The engine.
step "3/5 starting the engine"
JSON=$DIR/engine.json
mkdir -p -m 0700 "$DIR" "$DIR/logs"
health() { # endpoint -> instanceId of the engine answering there, or nothing
  curl -s --max-time 2 "http://$1/v1/health" 2>/dev/null | jq -r '.instanceId // empty' 2>/dev/null || true
}
running=""
if [ -f "$JSON" ]; then
  ep=$(jq -r '.endpoint // empty' "$JSON" 2>/dev/null || true)
  id=$(jq -r '.instanceId // empty' "$JSON" 2>/dev/null || true)
  if [ -n "$ep" ] && [ -n "$id" ] && [ "$(health "$ep")" = "$id" ]; then running=1; fi
fi
if [ -n "$running" ]; then
  say "an engine is already running for $DIR (pid $(jq -r .pid "$JSON")): using it"
else
  rm -f "$JSON" # a stale file of an engine that is gone
  # its own session: closing this terminal or Ctrl-C here must not stop it; no idle timeout, so
  # that it keeps serving until it is stopped
  setsid nohup node "$ROOT/bin/sqlrs-engine.js" --listen "$LISTEN" --write-engine-json "$JSON" --idle-timeout 0 \
    >>"$DIR/logs/engine.out" 2>&1 </dev/null &
  pid=$!
  deadline=$((SECONDS + TIMEOUT))
  until [ -f "$JSON" ] && [ "$(jq -r '.pid' "$JSON" 2>/dev/null)" = "$pid" ] \
      && [ "$(health "$(jq -r .endpoint "$JSON")")" = "$(jq -r .instanceId "$JSON")" ]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$DIR/logs/engine.out" >&2 || true
      die "the engine exited during start-up (see $DIR/logs/engine.out and $DIR/logs/engine.log)"
    fi
    [ $SECONDS -lt $deadline ] || die "the engine did not answer within ${TIMEOUT}s (see $DIR/logs/engine.log)"
    sleep 0.2
  done
  say "engine started: pid $pid, log $DIR/logs/engine.log"
fi
EP=$(jq -r .endpoint "$JSON")
PID=$(jq -r .pid "$JSON")
AUTH="Authorization: Bearer $(jq -r .authToken "$JSON")"
say "endpoint http://$EP"

# 4. The example.
step "4/5 preparing $IMAGE with examples/quickstart/schema.sql and data.sql"
body=$(jq -n --arg image "$IMAGE" --arg schema "$EXAMPLE/schema.sql" --arg data "$EXAMPLE/data.sql" \
  '{prepare_kind: "psql", image_id: $image, psql_args: ["-f", $schema, "-f", $data]}')
submitted=$(curl -sS --max-time 30 -H "$AUTH" -H 'Content-Type: application/json' -X POST "http://$EP/v1/prepare-jobs" -d "$body")
JOB=$(jq -r '.job_id // empty' <<<"$submitted")
[ -n "$JOB" ] || die "the engine refused the job: $submitted"
say "job $JOB"
events=$(mktemp)
trap 'rm -f "$events"' EXIT
# The events as they arrive; the stream ends after the job's result or error.
{ curl -sS -N --max-time "$TIMEOUT" -H "$AUTH" "http://$EP/v1/prepare-jobs/$JOB/events" || say "the event stream broke off" >&2; } \
  | tee "$events" | jq -r --unbuffered '
  ((.ts // "") | split("T")[1] // "" | rtrimstr("Z") | split(".") as [$hms, $frac]
    | "\($hms).\((($frac // "") + "000")[0:3])") as $t
  | if .type == "status" then "  \($t)  status  \(.status)"
    elif .type == "task" then "  \($t)  task    \(.task_id) \(.status)"
    elif .type == "log" then "  \($t)  log     \(.message)"
    elif .type == "result" then "  \($t)  result  instance \(.result.instance_id), state \(.result.state_id[0:16])…"
    elif .type == "error" then "  \($t)  error   \(.error.message)\(if .error.details then ": " + .error.details else "" end)"
    else "  \($t)  \(.type)" end'
DSN=$(jq -r 'select(.type == "result") | .result.dsn' "$events" | tail -n 1)
INSTANCE=$(jq -r 'select(.type == "result") | .result.instance_id' "$events" | tail -n 1)
if [ -z "$DSN" ]; then
  err=$(jq -r 'select(.type == "error") | .error | "\(.message)\(if .details then ": " + .details else "" end)"' "$events" | tail -n 1)
  die "the job did not succeed: ${err:-the event stream ended early (see $DIR/logs/engine.log)}"
fi

# 5. Proof.
step "5/5 asking the new database"
psql "$DSN" -X -v ON_ERROR_STOP=1 -c "select a.name as author, count(*) as books, count(o.title) as on_loan
  from authors a join books b using (author_id) left join books_on_loan o on o.title = b.title
  group by a.name order by a.name"

cat <<EOF

quickstart: ready.
  dsn:             $DSN
  try:             psql '$DSN' -c 'table books_on_loan'
  engine:          pid $PID at http://$EP (discovery file $JSON, log $DIR/logs/engine.log)
  delete instance: curl -s -X DELETE -H "Authorization: Bearer \$(jq -r .authToken $JSON)" http://$EP/v1/instances/$INSTANCE
  stop the engine: kill $PID    (SIGTERM: a clean shutdown; the instance's container keeps running)
EOF

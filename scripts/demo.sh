#!/usr/bin/env bash
# `make demo`: the whole system on this machine, end to end, with the example project.
#
#   embedded Ensign server ─▶ migrate ─▶ record readings (ORM → outbox rows)
#   ─▶ relay until acked ─▶ subscriber until handled ─▶ report
#
# `make demo SERVE=1` (this script with --serve) then keeps the server, the relay,
# the subscriber and runserver going until Ctrl-C, and stops them all on exit.
# Everything it writes stays in example_project/ (db.sqlite3, ensign-data/), both
# gitignored; delete them for a clean slate. DATABASE_URL switches to PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."

SERVE=0
for arg in "$@"; do
  case "$arg" in
    --serve) SERVE=1 ;;
    *) echo "usage: $0 [--serve]" >&2; exit 2 ;;
  esac
done

PY=${VENV:-.venv}/bin/python
[ -x "$PY" ] || { echo "demo: no virtualenv at ${VENV:-.venv}; run 'make demo' (it installs first)" >&2; exit 1; }
export DJANGO_SETTINGS_MODULE=example_project.settings PYTHONUNBUFFERED=1
# The demo talks to its own embedded server, whatever this shell points Ensign at.
unset ENSIGN_CLIENT_ID ENSIGN_CLIENT_SECRET ENSIGN_INSECURE ENSIGN_CREDENTIALS_FILE

# DEMO_DIR moves the demo's state (server data, logs, SQLite file) elsewhere (the tests do).
DEMO_DIR=$(cd "${DEMO_DIR:-example_project}" && pwd)
DATA_DIR=$DEMO_DIR/ensign-data
if [ -z "${DATABASE_URL:-}" ] && [ "$DEMO_DIR" != "$(pwd)/example_project" ]; then
  export DATABASE_URL=sqlite:///$DEMO_DIR/db.sqlite3
fi
LOG_DIR=$DATA_DIR/logs
mkdir -p "$LOG_DIR"
export ENSIGN_SERVER_DATA_DIR=$DATA_DIR

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pick_port() {  # the usual port, or any free one if something else holds it
  if port_busy "$1"; then free_port; else echo "$1"; fi
}
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
manage() { "$PY" manage.py "$@"; }
# Background processes start python directly (not via a function) so $! is its pid.

PIDS=()
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [ ${#PIDS[@]} -gt 0 ]; then
    kill -TERM "${PIDS[@]}" 2>/dev/null || true
    for _ in $(seq 1 50); do
      local alive=0
      for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
      [ $alive = 0 ] && break
      sleep 0.1
    done
    kill -KILL "${PIDS[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

GRPC_PORT=$(pick_port "${ENSIGN_DEMO_PORT:-5356}")
AUTH_PORT=$(pick_port "${ENSIGN_DEMO_AUTH_PORT:-8088}")
export ENSIGN_ENDPOINT=127.0.0.1:$GRPC_PORT ENSIGN_AUTH_URL=http://127.0.0.1:$AUTH_PORT

step "embedded Ensign server on 127.0.0.1:$GRPC_PORT (auth :$AUTH_PORT), data in ${DATA_DIR#"$(pwd)"/}"
"$PY" -m django_ensign.server serve --data-dir "$DATA_DIR" --port "$GRPC_PORT" \
  --auth-port "$AUTH_PORT" --log-level WARNING >"$LOG_DIR/server.log" 2>&1 &
SERVER_PID=$!
PIDS+=("$SERVER_PID")
for _ in $(seq 1 300); do
  [ -s "$DATA_DIR/credentials.json" ] && port_busy "$GRPC_PORT" && port_busy "$AUTH_PORT" && break
  kill -0 "$SERVER_PID" 2>/dev/null || break
  sleep 0.1
done
if ! port_busy "$GRPC_PORT" || ! [ -s "$DATA_DIR/credentials.json" ]; then
  echo "demo: the server did not start; its log:" >&2; cat "$LOG_DIR/server.log" >&2; exit 1
fi
echo "credentials: ${DATA_DIR#"$(pwd)"/}/credentials.json"

step "migrate"
manage migrate --noinput -v 0

step "superuser admin / admin (a local demo account: never use it anywhere else)"
manage shell -v 0 -c '
from django.contrib.auth import get_user_model
User = get_user_model()
user, created = User.objects.get_or_create(username="admin", defaults={"email": "admin@example.com"})
user.is_staff = user.is_superuser = True
user.set_password("admin")
user.save()
print("created" if created else "already there (password reset to admin)")
'

step "record readings through the ORM (each save writes an outbox row in the same transaction)"
manage record_readings

# The subscriber starts now so that its start-up overlaps the relay's work.
"$PY" manage.py ensign_subscribe weather >"$LOG_DIR/subscriber.log" 2>&1 &
SUB_PID=$!
PIDS+=("$SUB_PID")

step "relay: ensign_publish_outbox --once until every event is acked"
for attempt in $(seq 1 10); do
  manage ensign_publish_outbox --once
  manage weather_report --wait acked --timeout 0 --quiet 2>/dev/null && break
  [ "$attempt" = 10 ] && { echo "demo: events still not acked after 10 relay runs" >&2; exit 1; }
  sleep 0.5
done

step "subscriber: ensign_subscribe weather (started with the relay) until every event is handled"
if ! manage weather_report --wait handled --timeout 60 --quiet; then
  echo "demo: the subscriber's log:" >&2; cat "$LOG_DIR/subscriber.log" >&2; exit 1
fi
kill -TERM "$SUB_PID" 2>/dev/null || true
wait "$SUB_PID" 2>/dev/null || true
PIDS=("$SERVER_PID")
echo "handled; subscriber stopped (log: ${LOG_DIR#"$(pwd)"/}/subscriber.log)"

step "report"
manage weather_report

WEB_PORT=$(pick_port "${DEMO_WEB_PORT:-8000}")
ADMIN_URL="http://127.0.0.1:$WEB_PORT/admin/"
echo "(the demo took ${SECONDS}s)"
if [ "$SERVE" = 0 ]; then
  echo
  echo "Admin: $ADMIN_URL (user admin, password admin; local demo only)"
  echo "It needs the web server: run 'make demo SERVE=1' to keep everything running."
  exit 0
fi

step "serving until Ctrl-C: server, relay, subscriber, runserver"
"$PY" manage.py ensign_publish_outbox >"$LOG_DIR/relay.log" 2>&1 &
PIDS+=("$!")
"$PY" manage.py ensign_subscribe weather >>"$LOG_DIR/subscriber.log" 2>&1 &
PIDS+=("$!")
"$PY" manage.py runserver --noreload "127.0.0.1:$WEB_PORT" >"$LOG_DIR/runserver.log" 2>&1 &
PIDS+=("$!")
echo "Admin: $ADMIN_URL (user admin, password admin; local demo only)"
echo "Add, change or delete a Reading there: the relay publishes it, the subscriber"
echo "stores it under Received readings and updates the station summary."
echo "Logs: ${LOG_DIR#"$(pwd)"/}/{server,relay,subscriber,runserver}.log"
# Return when any of them exits (or on Ctrl-C); the EXIT trap stops the rest.
wait -n "${PIDS[@]}"
echo "demo: a process stopped on its own; see the logs above. Stopping the rest." >&2
exit 1

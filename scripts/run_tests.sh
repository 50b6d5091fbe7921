#!/usr/bin/env bash
# The test command behind `make test`: start the services, start one embedded
# Ensign server for the suite to share, run pytest, stop the server.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${VENV:-.venv}/bin

bash scripts/services.sh

# The admin browser test needs Debian's Chromium and its driver; install them
# when apt can (root on a Debian machine), else that test skips and says so.
if ! command -v chromedriver >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "installing chromium and chromium-driver for the browser test"
  (apt-get update -qq && apt-get install -y -qq chromium chromium-driver) >/tmp/apt-chromium.log 2>&1 \
    || echo "could not install chromium (see /tmp/apt-chromium.log); the browser test will skip"
fi

data_dir=$(mktemp -d /tmp/ensign-ci-XXXXXX)
port=$("$BIN/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
auth_port=$("$BIN/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN/python" -m django_ensign.server serve --data-dir "$data_dir" --host 127.0.0.1 \
  --port "$port" --auth-port "$auth_port" >"$data_dir/server.log" 2>&1 &
server_pid=$!
trap 'kill -TERM $server_pid 2>/dev/null; wait $server_pid 2>/dev/null; rm -rf "$data_dir"' EXIT

for _ in $(seq 1 100); do
  [ -s "$data_dir/credentials.json" ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
if [ -s "$data_dir/credentials.json" ]; then
  echo "embedded Ensign server on 127.0.0.1:$port (auth :$auth_port), data in $data_dir"
  export ENSIGN_TEST_SERVER="127.0.0.1:$port" ENSIGN_TEST_AUTH_URL="http://127.0.0.1:$auth_port"
  export ENSIGN_TEST_CREDENTIALS="$data_dir/credentials.json"
else
  echo "embedded Ensign server did not start; tests start their own:"; cat "$data_dir/server.log"
fi

mkdir -p test-output
if [ $# -gt 0 ]; then
  "$BIN/python" -m pytest "$@"
  exit $?
fi

# 1. The whole suite, on PostgreSQL when it is up (tests/settings.py decides).
"$BIN/python" -m pytest
status=$?
# 2. The database-facing features again on SQLite.
# A file database (not :memory:) so the tests that run commands as subprocesses share it.
sqlite_file=$(mktemp -u /tmp/ensign-test-XXXXXX.sqlite3)
ENSIGN_TEST_DB=sqlite ENSIGN_TEST_SQLITE="$sqlite_file" "$BIN/python" -m pytest tests/outbox tests/subscriptions
sqlite_status=$?
# pytest exits 5 when it collected nothing: a failure here too.
rm -f "$sqlite_file" "$sqlite_file"-wal "$sqlite_file"-shm
# 3. The outbox again on PostgreSQL through django_ensign's engine (rows ride the COMMIT).
engine_status=0
if (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
  ENSIGN_TEST_DB=postgres ENSIGN_TEST_PG_ENGINE=django_ensign.db.backends.postgresql \
    "$BIN/python" -m pytest tests/outbox
  engine_status=$?
else
  echo "PostgreSQL is down: the outbox tests through django_ensign's engine did not run"
fi
[ $status -eq 0 ] && [ $sqlite_status -eq 0 ] && [ $engine_status -eq 0 ]

#!/usr/bin/env bash
# Start the machine's PostgreSQL, Redis and RabbitMQ if they are installed but
# stopped. Prints what it did; never fails: tests that need a missing service
# skip themselves and say so.
set -u

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_up() {
  for _ in $(seq 1 60); do up "$1" && return 0; sleep 0.5; done
  return 1
}

if ! up 5432 && command -v pg_ctlcluster >/dev/null 2>&1; then
  echo "services: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  wait_up 5432 || echo "services: PostgreSQL did not come up"
fi
if ! up 6379 && command -v redis-server >/dev/null 2>&1; then
  echo "services: starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /tmp --logfile /tmp/redis-ci.log || true
  wait_up 6379 || echo "services: Redis did not come up"
fi
if ! up 5672 && command -v rabbitmq-server >/dev/null 2>&1; then
  echo "services: starting RabbitMQ"
  rabbitmq-server -detached || true
  wait_up 5672 || echo "services: RabbitMQ did not come up"
fi
for port in 5432 6379 5672; do
  up "$port" && echo "services: port $port up" || echo "services: port $port DOWN (tests needing it will skip)"
done
exit 0

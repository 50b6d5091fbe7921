"""Reading back what reached the server, and running relays, for the outbox tests."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.db import connection
from django.test import override_settings

from django_ensign.client import ReceivedEvent
from django_ensign.wire import metadata
from tests.support.clients import sdk_client as client_for
from tests.support.server import EmbeddedServer

if TYPE_CHECKING:
    from django_ensign.models import OutboxEvent

ROOT = Path(__file__).resolve().parents[2]


def unique_topic(prefix: str = "outbox") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def server_events(server: EmbeddedServer, topic: str) -> list[ReceivedEvent]:
    """Every event stored on ``topic``, in stored order (EnSQL)."""

    async def read() -> list[ReceivedEvent]:
        client = client_for(server)
        try:
            if not await client.topic_exists(topic):
                return []
            return await (await client.query(f"SELECT * FROM {topic}")).fetchall()
        finally:
            await client.close()

    return asyncio.run(read())


def stable_ids(events: list[ReceivedEvent]) -> list[str]:
    return [e.meta[metadata.STABLE_ID_KEY] for e in events]


def assert_each_once_on_server(topic: str, server: EmbeddedServer, rows: list[OutboxEvent]) -> None:
    """The server holds exactly one copy of each row's event on ``topic``, and nothing else."""
    sent = Counter(stable_ids(server_events(server, topic)))
    assert sent == Counter(row.event_id for row in rows)


def assert_key_order_on_server(topic: str, server: EmbeddedServer, rows: list[OutboxEvent]) -> None:
    """Per key, the first copy of each event on the server comes in outbox (commit) order."""
    position = {row.event_id: row.id for row in rows}
    seen: set[str] = set()
    by_key: dict[str, list[int]] = defaultdict(list)
    for event in server_events(server, topic):
        stable = event.meta[metadata.STABLE_ID_KEY]
        if stable in seen:
            continue  # a re-publish after a crash; consumers deduplicate on the stable id
        seen.add(stable)
        by_key[event.meta[metadata.ORDERING_KEY]].append(position[stable])
    for key, ids in by_key.items():
        assert ids == sorted(ids), f"key {key} out of order"


def run_async(coro: Any) -> Any:
    return asyncio.run(coro)


@contextmanager
def ensign_settings(server: EmbeddedServer, **extra: Any) -> Iterator[None]:
    """Point the app's ENSIGN_* settings at ``server`` (``extra`` may override them)."""
    env = server.client_env()
    connection = {
        "ENSIGN_ENDPOINT": env["ENSIGN_ENDPOINT"],
        "ENSIGN_AUTH_URL": env["ENSIGN_AUTH_URL"],
        "ENSIGN_INSECURE": True,
        "ENSIGN_CLIENT_ID": env["ENSIGN_CLIENT_ID"],
        "ENSIGN_CLIENT_SECRET": env["ENSIGN_CLIENT_SECRET"],
    }
    with override_settings(**{**connection, **extra}):
        yield


def subprocess_env(server: EmbeddedServer, **extra: str) -> dict[str, str]:
    """Environment for a ``manage.py`` subprocess that shares this test's database and server."""
    db = connection.settings_dict
    env = {
        **os.environ,
        **server.client_env(),
        "DJANGO_SETTINGS_MODULE": "tests.outbox.relay_settings",
    }
    env["PYTHONPATH"] = str(ROOT)
    if connection.vendor == "postgresql":
        env["ENSIGN_TEST_DB"] = "postgres"
        env["ENSIGN_TEST_PG_NAME"] = str(db["NAME"])
    else:
        env["ENSIGN_TEST_DB"] = "sqlite"
    env.update(extra)
    return env


def relay_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "django", "ensign_publish_outbox", *args]


def start_relay(
    server: EmbeddedServer, *args: str, log: Path, **env: str
) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            relay_command(*args),
            cwd=ROOT,
            env=subprocess_env(server, **env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_until(condition: Any, timeout: float, what: str, every: float = 0.1) -> None:
    """Poll ``condition()`` (a database query, say) until true; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def relays_listening() -> int:
    """Relay processes past start-up: each holds one session that ran ``LISTEN`` (PostgreSQL)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query LIKE 'LISTEN %%'"
        )
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def stop(process: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    """SIGTERM and wait; returns the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise

"""Fixtures of the subscription tests: publishing with the SDK, running the subscriber."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from django_ensign.client import Event
from django_ensign.wire.metadata import STABLE_ID_KEY
from tests.support.clients import sdk_client as client_for
from tests.support.server import EmbeddedServer

ROOT = Path(__file__).resolve().parents[2]


async def publish(
    server: EmbeddedServer,
    topic: str,
    payloads: list[dict[str, Any]],
    *,
    type_name: str = "Reading",
    stable_ids: list[str] | None = None,
    metadata: dict[str, str] | None = None,
) -> None:
    """Publish JSON events (each with ``metadata``) and wait for every ack."""
    client = client_for(server)
    try:
        for n, payload in enumerate(payloads):
            meta = {**(metadata or {}), **({STABLE_ID_KEY: stable_ids[n]} if stable_ids else {})}
            event = Event(
                json.dumps(payload).encode(),
                "application/json",
                schema_name=type_name,
                schema_version="1.0.0",
                meta=meta,
            )
            await client.publish(topic, event, ensure_exists=True)
        await client.flush(timeout=60)
    finally:
        await client.close()


def publish_sync(
    server: EmbeddedServer, topic: str, payloads: list[dict[str, Any]], **kw: Any
) -> None:
    import asyncio

    asyncio.run(publish(server, topic, payloads, **kw))


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def subprocess_env(server: EmbeddedServer, **extra: str) -> dict[str, str]:
    """Environment of a subprocess using the test database and ``server``."""
    name = str(connection.settings_dict["NAME"])
    if connection.vendor == "sqlite" and (":memory:" in name or "mode=memory" in name):
        pytest.skip("subprocesses need a file database: set ENSIGN_TEST_SQLITE to a path")
    return {
        **os.environ,
        **server.client_env(),
        "DJANGO_SETTINGS_MODULE": "tests.subscriptions.subprocess_settings",
        "ENSIGN_SUBPROCESS_DB": name,
        "PYTHONPATH": str(ROOT),
        **extra,
    }


@dataclass
class SubscriberProcess:
    """``python -m django ensign_subscribe …`` as a real subprocess."""

    args: list[str]
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    runs: list[str] = field(default_factory=list)

    def start(self) -> SubscriberProcess:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "django", "ensign_subscribe", *self.args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=ROOT,
            )
        return self

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def terminate(self, timeout: float = 30) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


@pytest.fixture
def subscriber_process(
    fresh_server: EmbeddedServer, tmp_path: Path
) -> Iterator[Callable[..., SubscriberProcess]]:
    """Start ``ensign_subscribe`` subprocesses against ``fresh_server``; killed at the end."""
    started: list[SubscriberProcess] = []

    def start(*args: str, **env: str) -> SubscriberProcess:
        proc = SubscriberProcess(
            args=[*args, "--group", env.pop("group", "tests")],
            env=subprocess_env(fresh_server, **env),
            log=tmp_path / f"subscriber-{len(started)}.log",
        ).start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()


@pytest.fixture
def group_name() -> str:
    return f"g-{uuid.uuid4().hex[:12]}"

"""``ensign_subscribe --celery`` with a real broker and two real Celery workers."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.db.models import Count

from django_ensign.models import InboxEvent
from django_ensign.wire.ids import new_ulid, ulid_to_str
from tests.handlerapp.models import Applied
from tests.subscriptions.conftest import (
    ROOT,
    SubscriberProcess,
    publish_sync,
    subprocess_env,
    wait_until,
)
from tests.support.server import EmbeddedServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request: pytest.FixtureRequest) -> str:
    marker = pytest.mark.redis if request.param == "redis" else pytest.mark.rabbitmq
    request.applymarker(marker)
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture
def celery_env(fresh_server: EmbeddedServer, broker: str) -> dict[str, str]:
    return subprocess_env(
        fresh_server,
        ENSIGN_SUBPROCESS_BROKER=broker,
        ENSIGN_SUBPROCESS_QUEUE=f"ensign-subs-{uuid.uuid4().hex[:10]}",
    )


@pytest.fixture
def workers(celery_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[[], Path]]:
    """Start a Celery worker subprocess (solo pool) on the test's queue; returns its log."""
    started: list[subprocess.Popen[bytes]] = []

    def start() -> Path:
        log = tmp_path / f"worker-{len(started)}.log"
        with log.open("ab") as out:
            started.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "celery",
                        "-A",
                        "tests.subscriptions.celery_app",
                        "worker",
                        "--pool",
                        "solo",
                        "-Q",
                        celery_env["ENSIGN_SUBPROCESS_QUEUE"],
                        "-n",
                        f"w{len(started)}-{uuid.uuid4().hex[:6]}@%h",
                        "--without-gossip",
                        "--without-mingle",
                        "--without-heartbeat",
                        "-l",
                        "info",
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=celery_env,
                    cwd=ROOT,
                )
            )
        return log

    yield start
    for proc in started:
        proc.terminate()
    for proc in started:
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()  # a warm shutdown may wait on the broker; the test is over
            proc.wait()


def succeeded(logs: list[Path]) -> int:
    return sum(log.read_text().count("succeeded in") for log in logs if log.exists())


@pytest.mark.timeout(180)
def test_celery_workers_apply_each_event_once(
    fresh_server: EmbeddedServer,
    celery_env: dict[str, str],
    workers: Callable[[], Path],
    tmp_path: Path,
) -> None:
    logs = [workers(), workers()]
    twice = ulid_to_str(new_ulid())
    payloads = [{"n": n} for n in range(40)]
    stable = [ulid_to_str(new_ulid()) for _ in range(38)] + [twice, twice]
    publish_sync(fresh_server, "sub-celery", payloads, stable_ids=stable)

    proc = SubscriberProcess(
        args=["sub-celery", "--celery", "--group", "celery-tests", "-v", "2"],
        env=celery_env,
        log=tmp_path / "subscriber.log",
    ).start()
    try:
        wait_until(lambda: succeeded(logs) >= 40, 120, "40 tasks to succeed")
        assert proc.terminate() == 0, proc.output()
    finally:
        proc.kill()

    assert "Queued sub-celery" in proc.output()
    assert "queued 40" in proc.output()
    per_event = Applied.objects.values("event_id").annotate(n=Count("id"))
    assert per_event.count() == 39
    assert not per_event.filter(n__gt=1).exists()
    assert InboxEvent.objects.filter(event_id=twice).count() == 1

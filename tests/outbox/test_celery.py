"""The Celery task drains the outbox through a real Redis broker, and skips while a relay runs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from celery.signals import before_task_publish
from django.test import override_settings

from django_ensign import exceptions, locks, outbox, tasks
from django_ensign.models import OutboxEvent, OutboxStatus
from tests.outbox.support import ensign_settings, server_events, stable_ids, unique_topic
from tests.support.server import EmbeddedServer, free_port

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis, pytest.mark.slow]


@pytest.fixture
def celery_app(redis_url: str) -> Iterator[Celery]:
    app = Celery("django_ensign_tests", broker=redis_url, backend=redis_url, set_as_current=True)
    app.conf.update(task_default_queue="django-ensign-tests", worker_hijack_root_logger=False)
    app.control.purge()  # a drain left queued by an aborted run must not take these rows
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
        yield app


def run_task(app: Celery, **kwargs: Any) -> dict[str, int]:
    result = app.send_task("django_ensign.tasks.publish_outbox", kwargs=kwargs)
    return dict(result.get(timeout=60))


def test_task_publishes_pending_rows(celery_app: Celery, ensign_server: EmbeddedServer) -> None:
    topic = unique_topic("celery")
    rows = [outbox.publish(topic, {"n": n}, key=str(n % 4)) for n in range(20)]
    with ensign_settings(ensign_server):
        stats = run_task(celery_app, batch_size=8)
    assert stats["acked"] == 20
    assert OutboxEvent.objects.filter(status=OutboxStatus.ACKED).count() == 20
    assert sorted(stable_ids(server_events(ensign_server, topic))) == sorted(
        r.event_id for r in rows
    )


def test_task_skips_while_a_relay_holds_the_drain_lock(
    celery_app: Celery, ensign_server: EmbeddedServer
) -> None:
    row = outbox.publish(unique_topic("celery"), {"n": 1})
    with ensign_settings(ensign_server), locks.drain_lock(shared=True) as taken:
        assert taken
        assert run_task(celery_app) == {"skipped": 1}
    assert OutboxEvent.objects.get(id=row.id).status == OutboxStatus.PENDING


def test_task_during_an_outage_returns_its_counts_and_leaves_the_rows_uncounted(
    celery_app: Celery,
) -> None:
    topic = unique_topic("celery-down")
    for n in range(3):
        outbox.publish(topic, {"n": n})
    nowhere = free_port()  # neither gRPC nor the auth service listens there
    with override_settings(
        ENSIGN_ENDPOINT=f"127.0.0.1:{nowhere}",
        ENSIGN_AUTH_URL=f"http://127.0.0.1:{nowhere}",
        ENSIGN_INSECURE=True,
        ENSIGN_CLIENT_ID="a" * 32,
        ENSIGN_CLIENT_SECRET="b" * 64,
    ):
        stats = run_task(celery_app, topics=[topic])
    assert (stats["unreachable"], stats["acked"], stats["released"]) == (1, 0, 3)
    rows = OutboxEvent.objects.filter(topic=topic)
    assert set(rows.values_list("status", "attempts")) == {(OutboxStatus.PENDING, 0)}


def test_task_ensign_refuses_fails(celery_app: Celery, ensign_server: EmbeddedServer) -> None:
    topic = unique_topic("celery-refused")
    row = outbox.publish(topic, {"n": 1})
    with (
        ensign_settings(ensign_server, ENSIGN_CLIENT_SECRET="x" * 64),
        pytest.raises(exceptions.RelayStopped, match="Ensign refused the relay"),
    ):
        run_task(celery_app, topics=[topic])
    assert OutboxEvent.objects.get(id=row.id).attempts == 0


def test_beat_schedule_entry_names_the_task() -> None:
    [entry] = tasks.OUTBOX_BEAT_SCHEDULE.values()
    assert entry["task"] == tasks.publish_outbox.name == "django_ensign.tasks.publish_outbox"


def test_on_commit_trigger_queues_a_drain_per_transaction(
    celery_app: Celery, ensign_server: EmbeddedServer
) -> None:
    from django.db import transaction

    from tests.outbox.support import wait_until

    queued: list[str] = []
    expires: list[object] = []

    def count(sender: str | None = None, headers: Any = None, **kwargs: Any) -> None:
        if sender == "django_ensign.tasks.publish_outbox":
            queued.append(sender)
            expires.append((headers or {}).get("expires"))

    topic = unique_topic("oncommit")
    before_task_publish.connect(count)
    with ensign_settings(ensign_server, ENSIGN_OUTBOX_CELERY_ON_COMMIT=True):
        try:
            with transaction.atomic():
                rows = [outbox.publish(topic, {"n": n}) for n in range(3)]
                assert queued == []  # not before the commit
            assert len(queued) == 1  # one drain for the three rows
            assert expires[0] is not None  # stale once a later drain would have run
            with transaction.atomic():
                outbox.publish(topic, {"n": "rolled back"})
                transaction.set_rollback(True)
            assert len(queued) == 1
        finally:
            before_task_publish.disconnect(count)
        wait_until(
            lambda: OutboxEvent.objects.filter(status=OutboxStatus.ACKED).count() == 3,
            60,
            "the queued drain to publish the rows",
        )
    assert sorted(stable_ids(server_events(ensign_server, topic))) == sorted(
        r.event_id for r in rows
    )

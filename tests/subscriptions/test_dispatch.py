"""Dispatch: each handler's work and its inbox row commit together; failures roll back."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings as django_settings
from django.db import connection, connections, router
from django.db.models import Model
from django.test import override_settings

from django_ensign import dispatch, exceptions, outbox
from django_ensign.handlers import InboundEvent
from django_ensign.models import (
    DeadLetter,
    DeadLetterReason,
    DeadLetterStatus,
    InboxEvent,
    OutboxEvent,
)
from tests.handlerapp import ensign_handlers
from tests.handlerapp.models import Applied, Switch

pytestmark = pytest.mark.django_db


def make_event(
    topic: str, event_id: str = "01J0000000000000000000000A", **kw: object
) -> InboundEvent:
    data = kw.pop("data", json.dumps({"level": "high"}).encode())
    return InboundEvent(
        topic=topic, event_id=event_id, data=data, mimetype="application/json", **kw
    )  # type: ignore[arg-type]


def test_sync_and_async_handlers_of_a_topic_each_apply_the_event_once() -> None:
    event = make_event("sub-multi")
    dispatch.handle_now(event)
    dispatch.handle_now(event)  # a redelivery

    assert sorted(Applied.objects.values_list("handler", flat=True)) == ["async", "sync"]
    assert InboxEvent.objects.filter(event_id=event.event_id).count() == 2


def test_redelivery_reports_duplicates() -> None:
    event = make_event("sub-multi")
    first = dispatch.attempt(event, dispatch.plan(event))
    again = dispatch.attempt(event, dispatch.plan(event))
    assert {r.outcome for r in first} == {dispatch.Outcome.HANDLED}
    assert {r.outcome for r in again} == {dispatch.Outcome.DUPLICATE}


def test_events_are_routed_by_type_name() -> None:
    dispatch.handle_now(make_event("sub-typed", "01J0000000000000000000000B", type_name="Reading"))
    dispatch.handle_now(make_event("sub-typed", "01J0000000000000000000000C", type_name="Alert"))
    assert sorted(Applied.objects.values_list("handler", "event_id")) == [
        ("alert:high", "01J0000000000000000000000C"),
        ("reading", "01J0000000000000000000000B"),
    ]


def test_an_unknown_type_is_dead_lettered_at_once() -> None:
    dispatch.handle_now(make_event("sub-typed", type_name="Forecast"))
    dead = DeadLetter.objects.get()
    assert dead.reason == DeadLetterReason.UNKNOWN_TYPE
    assert dead.handler == ""
    assert "Forecast" in dead.error
    assert dead.attempts == 1
    assert not Applied.objects.exists()


def test_undecodable_json_is_dead_lettered_at_once_with_its_data() -> None:
    dispatch.handle_now(make_event("sub-multi", data=b"{not json"))
    dead = DeadLetter.objects.get()
    assert dead.reason == DeadLetterReason.UNDECODABLE
    assert "does not parse" in dead.error
    assert bytes(dead.data) == b"{not json"
    assert not Applied.objects.exists()
    assert not InboxEvent.objects.exists()


@override_settings(ENSIGN_SUBSCRIBER_BACKOFF_BASE=0.001, ENSIGN_SUBSCRIBER_BACKOFF_MAX=0.001)
def test_a_failing_handler_is_retried_rolled_back_dead_lettered_then_replayed() -> None:
    Switch.objects.create(name="flaky", on=True)
    ensign_handlers.flaky_tries.clear()
    event = make_event("sub-flaky", metadata={"k": "v"}, type_name="Reading", type_version="1.0.0")

    dispatch.handle_now(event, max_attempts=3)

    assert ensign_handlers.flaky_tries == [event.event_id] * 3
    assert not Applied.objects.exists()  # every try rolled back
    assert not InboxEvent.objects.exists()
    dead = DeadLetter.objects.get()
    assert dead.handler == "tests.handlerapp.ensign_handlers.flaky"
    assert dead.reason == DeadLetterReason.FAILED
    assert dead.attempts == 3
    assert "failing on purpose" in dead.error
    assert "RuntimeError" in dead.traceback
    assert dead.metadata == {"k": "v"}

    assert dispatch.replay(dead) is False  # still failing: stays dead, one more attempt
    dead.refresh_from_db()
    assert (dead.status, dead.attempts) == (DeadLetterStatus.DEAD, 4)

    Switch.objects.filter(name="flaky").update(on=False)
    assert dispatch.replay(dead) is True
    dead.refresh_from_db()
    assert dead.status == DeadLetterStatus.REPLAYED
    assert dead.replayed_at is not None
    assert list(Applied.objects.values_list("handler", "event_id")) == [("flaky", event.event_id)]
    assert InboxEvent.objects.filter(handler=dead.handler, event_id=event.event_id).exists()


# sub-cancelled(-sync) meet cancelled work: asyncio.CancelledError is no Exception.
@pytest.mark.parametrize("topic", ["sub-async-fail", "sub-cancelled", "sub-cancelled-sync"])
def test_a_handler_failure_rolls_back_its_writes(topic: str) -> None:
    results = dispatch.attempt(make_event(topic), dispatch.plan(make_event(topic)))
    assert [r.outcome for r in results] == [dispatch.Outcome.FAILED]
    assert not Applied.objects.exists()
    assert not InboxEvent.objects.exists()


def test_dead_lettering_the_same_event_twice_keeps_one_row() -> None:
    event = make_event("sub-typed", type_name="Forecast")
    dispatch.handle_now(event)
    dispatch.handle_now(event)
    dead = DeadLetter.objects.get()
    assert dead.attempts == 2


def test_event_payload_round_trips() -> None:
    import datetime as dt

    event = make_event(
        "t",
        data=b"\x00\xff",
        metadata={"a": "b"},
        committed_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        server_id="abc",
        offset=7,
    )
    assert InboundEvent.from_payload(json.loads(json.dumps(event.to_payload()))) == event


def test_a_batch_applies_each_event_once_and_skips_what_was_applied_before() -> None:
    before = make_event("sub-multi", "01J0000000000000000000000D")
    dispatch.handle_now(before)
    first = make_event("sub-multi", "01J0000000000000000000000E")
    second = make_event("sub-multi", "01J0000000000000000000000F")
    work = [(e, dispatch.plan(e)) for e in (first, first, before, second)]

    results = dispatch.attempt_batch(work)

    assert results is not None
    assert [{r.outcome for r in per_event} for per_event in results] == [
        {dispatch.Outcome.HANDLED},  # sync and async handler
        {dispatch.Outcome.DUPLICATE},  # the same stable id again in the batch
        {dispatch.Outcome.DUPLICATE},  # applied by an earlier transaction
        {dispatch.Outcome.HANDLED},
    ]
    applied = Applied.objects.values_list("handler", "event_id")
    assert sorted(applied) == sorted(
        (handler, e.event_id) for handler in ("sync", "async") for e in (before, first, second)
    )
    assert InboxEvent.objects.count() == 6


@pytest.mark.parametrize(
    "failing_topic", ["sub-flaky", "sub-async-fail", "sub-cancelled", "sub-cancelled-sync"]
)
def test_a_handler_failing_in_a_batch_rolls_back_every_event_of_it(failing_topic: str) -> None:
    Switch.objects.create(name="flaky", on=True)
    ok = make_event("sub-multi", "01J0000000000000000000000G")
    failing = make_event(failing_topic, "01J0000000000000000000000H")

    assert dispatch.attempt_batch([(e, dispatch.plan(e)) for e in (ok, failing)]) is None

    assert not Applied.objects.exists()
    assert not InboxEvent.objects.exists()


@pytest.mark.parametrize("topic", ["sub-wrapped-async", "sub-callable-async"])
def test_an_async_handler_behind_a_plain_decorator_or_in_an_object_runs(topic: str) -> None:
    first = make_event(topic, "01J0000000000000000000000J")
    second = make_event(topic, "01J0000000000000000000000K")

    dispatch.handle_now(first)
    assert dispatch.attempt_batch([(second, dispatch.plan(second))]) is not None

    applied = sorted(Applied.objects.values_list("event_id", flat=True))
    assert applied == [first.event_id, second.event_id]


@pytest.mark.parametrize("topic", ["sub-wrapped-async", "sub-callable-async"])
def test_such_an_async_handler_failing_rolls_back_its_writes(topic: str) -> None:
    event = make_event(topic, data=b'{"fail": true}')
    results = dispatch.attempt(event, dispatch.plan(event))
    assert [r.outcome for r in results] == [dispatch.Outcome.FAILED]
    assert not Applied.objects.exists()
    assert not InboxEvent.objects.exists()


def sloppy_event(raw: bool) -> InboundEvent:
    data = json.dumps({"raw": raw}).encode()
    return make_event("sub-sloppy", "01J0000000000000000000000L", data=data)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("raw", [False, True], ids=["orm", "raw-sql"])
def test_a_handler_swallowing_a_database_error_fails_its_event_not_the_batch(raw: bool) -> None:
    if raw and connection.vendor != "postgresql":
        pytest.skip("only PostgreSQL aborts a transaction at an error")
    Switch.objects.create(name="taken")
    ok = make_event("sub-multi", "01J0000000000000000000000M")
    sloppy = sloppy_event(raw)

    assert dispatch.attempt_batch([(e, dispatch.plan(e)) for e in (ok, sloppy)]) is None
    # The subscriber then tries them one by one.
    assert {r.outcome for r in dispatch.attempt(ok, dispatch.plan(ok))} == {
        dispatch.Outcome.HANDLED
    }
    [failed] = dispatch.attempt(sloppy, dispatch.plan(sloppy))

    assert failed.outcome is dispatch.Outcome.FAILED
    assert isinstance(failed.error, exceptions.TransactionAborted)
    assert Applied.objects.filter(event_id=ok.event_id).count() == 2
    assert not InboxEvent.objects.filter(event_id=sloppy.event_id).exists()


@pytest.mark.django_db(transaction=True)
def test_a_failing_on_commit_hook_neither_undoes_the_batch_nor_stops_other_hooks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ensign_handlers.hook_runs.clear()
    events = [
        make_event("sub-hooks", f"01J000000000000000000000H{n}", data=json.dumps(data).encode())
        for n, data in enumerate([{}, {"fail_hook": True}, {}])
    ]

    results = dispatch.attempt_batch([(e, dispatch.plan(e)) for e in events])

    assert results is not None
    assert [r.outcome for per_event in results for r in per_event] == [dispatch.Outcome.HANDLED] * 3
    assert ensign_handlers.hook_runs == [events[0].event_id, events[2].event_id]
    assert Applied.objects.count() == 3
    # Django logs a robust hook's failure and runs the rest.
    [record] = [r for r in caplog.records if "on_commit" in r.getMessage()]
    assert "with_hook.<locals>.after_commit" in record.getMessage()


@pytest.mark.django_db(transaction=True)
def test_a_batch_whose_handlers_publish_queues_one_celery_drain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    woken: list[str] = []
    monkeypatch.setattr(outbox._Wake, "__call__", lambda wake: woken.append(wake.using))
    events = [make_event("sub-publishes", f"01J000000000000000000000P{n}") for n in range(3)]
    with override_settings(ENSIGN_OUTBOX_CELERY_ON_COMMIT=True):
        assert dispatch.attempt_batch([(e, dispatch.plan(e)) for e in events]) is not None
    assert OutboxEvent.objects.count() == 3
    assert woken == ["default"]  # one wake-up per transaction, as outside handlers


@pytest.mark.django_db(transaction=True)
def test_a_failing_on_commit_hook_leaves_a_single_event_handled() -> None:
    event = make_event("sub-hooks", data=b'{"fail_hook": true}')
    [result] = dispatch.attempt(event, dispatch.plan(event))
    assert result.outcome is dispatch.Outcome.HANDLED
    [again] = dispatch.attempt(event, dispatch.plan(event))
    assert again.outcome is dispatch.Outcome.DUPLICATE
    assert Applied.objects.count() == 1


LONG_ID = "x" * 80
LONG_TYPE = "T" * 300


def test_an_over_long_stable_id_and_type_name_are_handled_once() -> None:
    event = make_event("sub-multi", LONG_ID, type_name=LONG_TYPE)
    batched = make_event("sub-multi", "y" * 80, type_name=LONG_TYPE)

    dispatch.handle_now(event)
    dispatch.handle_now(event)  # a redelivery
    assert dispatch.attempt_batch([(batched, dispatch.plan(batched))]) is not None
    assert dispatch.attempt_batch([(batched, dispatch.plan(batched))]) is not None

    assert Applied.objects.filter(event_id=event.event_id).count() == 2  # sync and async
    assert Applied.objects.filter(event_id=batched.event_id).count() == 2
    assert InboxEvent.objects.count() == 4
    assert not DeadLetter.objects.exists()


def test_an_over_long_event_is_dead_lettered_once() -> None:
    event = make_event("sub-typed", LONG_ID, type_name=LONG_TYPE, type_version="v" * 40)
    dispatch.handle_now(event)
    dispatch.handle_now(event)
    dead = DeadLetter.objects.get()
    assert (dead.reason, dead.attempts) == (DeadLetterReason.UNKNOWN_TYPE, 2)
    assert dead.metadata == {}
    assert dispatch.event_of(dead).event_id == dispatch.storable_id(LONG_ID)


class InboxElsewhere:
    """Routes django_ensign's tables to the ``held`` alias."""

    def db_for_write(self, model: type[Model], **hints: object) -> str | None:
        return "held" if model._meta.app_label == "django_ensign" else None

    db_for_read = db_for_write


@pytest.mark.skipif(
    "held" not in django_settings.DATABASES, reason="needs the PostgreSQL settings' second alias"
)
@pytest.mark.django_db(transaction=True, databases=["default", "held"])
def test_a_routed_inbox_rolls_back_with_a_failing_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(router, "routers", [InboxElsewhere()])
    Switch.objects.create(name="flaky", on=True)
    event = make_event("sub-flaky")

    assert dispatch.attempt_batch([(event, dispatch.plan(event))]) is None
    outcomes = [r.outcome for r in dispatch.attempt(event, dispatch.plan(event))]
    again = [r.outcome for r in dispatch.attempt(event, dispatch.plan(event))]

    assert outcomes == again == [dispatch.Outcome.FAILED]
    assert not InboxEvent.objects.using("held").exists()


@override_settings(USE_TZ=False, TIME_ZONE="Europe/Paris")
def test_a_project_without_time_zones_stores_commit_times_in_its_local_time() -> None:
    committed = dt.datetime(2026, 7, 1, 10, 0, tzinfo=dt.UTC)
    event = make_event("sub-multi", "01J0000000000000000000000J", committed_at=committed)
    dispatch.handle_now(event)
    batch = make_event("sub-multi", "01J0000000000000000000000K", committed_at=committed)
    assert dispatch.attempt_batch([(batch, dispatch.plan(batch))]) is not None
    dead = make_event("sub-typed", "01J0000000000000000000000L", type_name="Nobody")
    dispatch.handle_now(dataclasses.replace(dead, committed_at=committed))
    local = dt.datetime(2026, 7, 1, 12, 0)  # Paris in summer, as Django keeps it without USE_TZ
    stored = {row.event_id: row.committed_at for row in InboxEvent.objects.all()}
    assert set(stored.values()) == {local}
    assert DeadLetter.objects.get(event_id=dead.event_id).committed_at == local


@override_settings(ENSIGN_SUBSCRIBER_BACKOFF_BASE=0.5, ENSIGN_SUBSCRIBER_BACKOFF_MAX=5.0)
def test_the_backoff_stays_within_its_cap_however_many_tries_came_before() -> None:
    # A Celery task retrying through a long database outage counts past 1,024 tries.
    assert [0 <= dispatch.backoff(n) <= 5.0 for n in (1, 10, 1025, 10**6)] == [True] * 4


@pytest.mark.django_db(transaction=True)
def test_cancelling_the_call_that_runs_a_handler_cancels_it_unrecorded() -> None:
    # As the subscriber runs a try: attempt and settle in one thread, awaited by its task.
    ensign_handlers.hanging.clear()
    event = make_event("sub-hangs")
    pool = ThreadPoolExecutor(max_workers=1)

    async def main() -> None:
        call = sync_to_async(dispatch.attempt_and_settle, thread_sensitive=False, executor=pool)
        work = asyncio.create_task(call(event, dispatch.plan(event), attempt_number=1, final=True))
        await asyncio.wait_for(asyncio.to_thread(ensign_handlers.hanging.wait), 30)
        work.cancel()
        with pytest.raises(asyncio.CancelledError):
            await work

    asyncio.run(main())
    pool.submit(connections.close_all).result()  # once the handler's thread is done
    pool.shutdown()

    assert not DeadLetter.objects.exists()  # an interrupted handler has not failed
    assert not Applied.objects.exists()
    assert not InboxEvent.objects.exists()

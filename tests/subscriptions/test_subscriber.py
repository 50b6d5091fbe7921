"""The subscriber loop against the real embedded server: routing, retries, duplicates, stop."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from django.test import override_settings

from django_ensign import dispatch
from django_ensign.client import ReceivedEvent
from django_ensign.client.exceptions import Unavailable
from django_ensign.models import DeadLetter, DeadLetterReason, InboxEvent
from django_ensign.proto.api.v1beta1 import event_pb2
from django_ensign.subscriber import Stats, Subscriber, SubscriberOptions, inbound_from
from django_ensign.wire.ids import new_ulid, ulid_to_str
from django_ensign.wire.metadata import ORDERING_KEY
from tests.handlerapp.models import Applied, Switch
from tests.subscriptions.conftest import client_for, publish
from tests.support.server import EmbeddedServer

pytestmark = pytest.mark.django_db(transaction=True)


def run_until(
    server: EmbeddedServer,
    topics: tuple[str, ...],
    settled: int,
    *,
    before: Callable[[], Any] | None = None,
    once_subscribed: Callable[[], Any] | None = None,
    **options: Any,
) -> Stats:
    """Run a subscriber until ``settled`` events were acked; ``before`` publishes meanwhile,
    ``once_subscribed`` after the subscriber's stream is open."""

    async def main() -> Stats:
        done = asyncio.Event()
        subscribed = asyncio.Event()
        seen: list[Any] = []

        def on_settled(event: Any) -> None:
            seen.append(event)
            if len(seen) >= settled:
                done.set()

        def report(message: str, level: int) -> None:
            if message.startswith("Subscribed to"):
                subscribed.set()

        subscriber = Subscriber(
            SubscriberOptions(topics=topics, group=options.pop("group", "tests"), **options),
            client_factory=lambda: client_for(server),
            on_settled=on_settled,
            report=report,
        )
        runner = asyncio.create_task(subscriber.run())
        if before is not None:
            await before()
        if once_subscribed is not None:
            await asyncio.wait_for(subscribed.wait(), 60)
            await once_subscribed()
        waiter = asyncio.create_task(done.wait())
        finished, _ = await asyncio.wait(
            {runner, waiter}, timeout=60, return_when="FIRST_COMPLETED"
        )
        assert waiter in finished, f"only {len(seen)} of {settled} events settled"
        subscriber.stop()
        return await asyncio.wait_for(runner, 30)

    return asyncio.run(main())


@pytest.mark.parametrize("batch_size", [None, 0], ids=["batched", "plain-framing"])
def test_sync_and_async_handlers_of_one_topic_each_apply_every_event(
    fresh_server: EmbeddedServer, batch_size: int | None
) -> None:
    asyncio.run(publish(fresh_server, "sub-multi", [{"n": n} for n in range(20)]))

    stats = run_until(fresh_server, ("sub-multi",), 20, concurrency=4, batch_size=batch_size)

    assert stats.handled == 40
    assert Applied.objects.filter(handler="sync").count() == 20
    assert Applied.objects.filter(handler="async").count() == 20
    assert InboxEvent.objects.count() == 40


def test_events_go_to_the_handler_of_their_type(fresh_server: EmbeddedServer) -> None:
    async def both() -> None:
        await publish(fresh_server, "sub-typed", [{"t": 1}], type_name="Reading")
        await publish(fresh_server, "sub-typed", [{"level": "low"}], type_name="Alert")
        await publish(fresh_server, "sub-typed", [{"x": 1}], type_name="Forecast")

    asyncio.run(both())
    run_until(fresh_server, ("sub-typed",), 3)

    assert sorted(Applied.objects.values_list("handler", flat=True)) == ["alert:low", "reading"]
    dead = DeadLetter.objects.get()
    assert dead.reason == DeadLetterReason.UNKNOWN_TYPE
    assert dead.type_name == "Forecast"


def test_the_same_stable_id_published_twice_is_applied_once(fresh_server: EmbeddedServer) -> None:
    stable = ulid_to_str(new_ulid())
    asyncio.run(publish(fresh_server, "sub-multi", [{"n": 1}, {"n": 1}], stable_ids=[stable] * 2))

    stats = run_until(fresh_server, ("sub-multi",), 2, concurrency=1)

    assert stats.handled == 2
    assert stats.duplicates == 2
    assert list(Applied.objects.values_list("event_id", flat=True).distinct()) == [stable]
    assert Applied.objects.count() == 2  # one per handler


@override_settings(ENSIGN_SUBSCRIBER_BACKOFF_BASE=0.01, ENSIGN_SUBSCRIBER_BACKOFF_MAX=0.02)
def test_a_failing_handler_is_retried_then_dead_lettered_and_the_stream_moves_on(
    fresh_server: EmbeddedServer,
) -> None:
    Switch.objects.create(name="flaky", on=True)
    asyncio.run(publish(fresh_server, "sub-flaky", [{"n": 1}]))
    asyncio.run(publish(fresh_server, "sub-multi", [{"n": 2}]))

    stats = run_until(fresh_server, ("sub-flaky", "sub-multi"), 2, max_attempts=3)

    assert stats.dead == 1
    assert stats.retries >= 2  # SQLite's table locks may make the other event retry too
    dead = DeadLetter.objects.get()
    assert (dead.reason, dead.attempts, dead.topic) == (DeadLetterReason.FAILED, 3, "sub-flaky")
    assert not Applied.objects.filter(handler="flaky").exists()
    assert Applied.objects.filter(topic="sub-multi").count() == 2


@override_settings(ENSIGN_SUBSCRIBER_BACKOFF_BASE=0.01, ENSIGN_SUBSCRIBER_BACKOFF_MAX=0.02)
def test_a_failing_event_among_many_is_dead_lettered_and_each_other_applied_once(
    fresh_server: EmbeddedServer,
) -> None:
    Switch.objects.create(name="flaky", on=True)

    async def interleaved() -> None:
        await publish(fresh_server, "sub-bulk", [{"n": n} for n in range(40)])
        await publish(fresh_server, "sub-flaky", [{"n": 40}])
        await publish(fresh_server, "sub-bulk", [{"n": n} for n in range(41, 80)])

    asyncio.run(interleaved())

    # One slot: the events that arrive while a transaction runs are applied together.
    stats = run_until(fresh_server, ("sub-bulk", "sub-flaky"), 80, concurrency=1, max_attempts=3)

    assert (stats.handled, stats.dead) == (79, 1)
    assert DeadLetter.objects.get().attempts == 3
    assert not Applied.objects.filter(handler="flaky").exists()
    bulk = Applied.objects.filter(handler="bulk")
    assert bulk.count() == bulk.values("event_id").distinct().count() == 79
    assert InboxEvent.objects.count() == 79


@override_settings(ENSIGN_SUBSCRIBER_BACKOFF_BASE=0.01, ENSIGN_SUBSCRIBER_BACKOFF_MAX=0.02)
def test_a_handler_that_awaits_cancelled_work_fails_its_event_without_stalling_the_batch(
    fresh_server: EmbeddedServer,
) -> None:
    async def interleaved() -> None:
        await publish(fresh_server, "sub-bulk", [{"n": n} for n in range(20)])
        await publish(fresh_server, "sub-cancelled", [{"n": 20}])
        await publish(fresh_server, "sub-bulk", [{"n": n} for n in range(21, 40)])

    asyncio.run(interleaved())

    # One slot: the cancelled event shares a batch with bulk events.
    stats = run_until(
        fresh_server, ("sub-bulk", "sub-cancelled"), 40, concurrency=1, max_attempts=2
    )

    assert (stats.handled, stats.dead) == (39, 1)
    dead = DeadLetter.objects.get()
    assert (dead.reason, dead.attempts, dead.topic) == (DeadLetterReason.FAILED, 2, "sub-cancelled")
    assert "CancelledError" in dead.error
    assert not Applied.objects.filter(handler="cancelled").exists()  # its write rolled back
    assert Applied.objects.filter(handler="bulk").count() == 39


def test_nul_characters_from_another_publisher_do_not_stall_the_subscriber(
    fresh_server: EmbeddedServer,
) -> None:
    # PostgreSQL's text and jsonb refuse NUL, so the inbox and dead-letter rows of such an
    # event failed to write and it came back for ever.
    Switch.objects.create(name="flaky", on=True)
    odd = {"type_name": "Read\x00ing", "metadata": {"note": "a\x00b"}}
    asyncio.run(publish(fresh_server, "sub-multi", [{"n": 1}], stable_ids=["id\x00one"], **odd))
    asyncio.run(publish(fresh_server, "sub-flaky", [{"n": 2}], stable_ids=["id\x00two"], **odd))

    stats = run_until(fresh_server, ("sub-multi", "sub-flaky"), 2, max_attempts=2)

    assert (stats.handled, stats.dead) == (2, 1)  # sub-multi has two handlers
    # The ids keep a digest of the original: "id\ufffdone" from elsewhere stays another event.
    [(one, type_name)] = set(InboxEvent.objects.values_list("event_id", "type_name"))
    assert (one.startswith("id\ufffdone#"), type_name) == (True, "Read\ufffding")
    dead = DeadLetter.objects.get()
    assert dead.event_id.startswith("id\ufffdtwo#")
    assert (dead.type_name, dead.metadata["note"]) == ("Read\ufffding", "a\ufffdb")


def test_events_of_one_ordering_key_are_applied_in_the_order_published(
    fresh_server: EmbeddedServer,
) -> None:
    payloads = [{"n": n} for n in range(60)]
    asyncio.run(publish(fresh_server, "sub-bulk", payloads, metadata={ORDERING_KEY: "one"}))

    run_until(fresh_server, ("sub-bulk",), 60, concurrency=4)

    applied = Applied.objects.filter(handler="bulk").order_by("id").values_list("value", flat=True)
    assert [json.loads(value)["n"] for value in applied] == list(range(60))


def stop_at_first_retry(server: EmbeddedServer, topics: tuple[str, ...], **options: Any) -> Stats:
    """Run a subscriber until it reports its first retry, then stop it."""

    async def main() -> Stats:
        retrying = asyncio.Event()

        def report(message: str, level: int) -> None:
            if message.startswith("Retrying"):
                retrying.set()

        subscriber = Subscriber(
            SubscriberOptions(topics=topics, group="tests", **options),
            client_factory=lambda: client_for(server),
            report=report,
        )
        runner = asyncio.create_task(subscriber.run())
        await asyncio.wait_for(retrying.wait(), 60)
        subscriber.stop()
        return await asyncio.wait_for(runner, 30)

    return asyncio.run(main())


@override_settings(ENSIGN_SUBSCRIBER_BACKOFF_BASE=30.0, ENSIGN_SUBSCRIBER_BACKOFF_MAX=30.0)
def test_a_stop_during_a_retry_keeps_the_rest_of_its_key_for_after_it(
    fresh_server: EmbeddedServer,
) -> None:
    Switch.objects.create(name="first", on=True)
    payloads = [{"n": n} for n in range(3)]
    asyncio.run(publish(fresh_server, "sub-first-fails", payloads, metadata={ORDERING_KEY: "k"}))

    stopped = stop_at_first_retry(fresh_server, ("sub-first-fails",), concurrency=2)
    assert stopped.handled == 0
    assert not Applied.objects.exists()  # nothing of key "k" went ahead of its first event

    Switch.objects.filter(name="first").update(on=False)
    run_until(fresh_server, ("sub-first-fails",), 3)
    applied = Applied.objects.order_by("id").values_list("value", flat=True)
    assert [json.loads(value)["n"] for value in applied] == [0, 1, 2]


def test_an_async_handler_failure_rolls_back_what_it_wrote(fresh_server: EmbeddedServer) -> None:
    asyncio.run(publish(fresh_server, "sub-async-fail", [{"n": 1}]))
    run_until(fresh_server, ("sub-async-fail",), 1, max_attempts=1)
    assert not Applied.objects.exists()
    assert DeadLetter.objects.get().handler == "tests.handlerapp.ensign_handlers.async_fail"


def test_a_restarted_group_resumes_after_what_it_acked(fresh_server: EmbeddedServer) -> None:
    asyncio.run(publish(fresh_server, "sub-multi", [{"n": n} for n in range(5)]))
    run_until(fresh_server, ("sub-multi",), 5)
    asyncio.run(publish(fresh_server, "sub-multi", [{"n": n} for n in range(5, 8)]))

    stats = run_until(fresh_server, ("sub-multi",), 3)

    assert stats.received == 3
    assert stats.duplicates == 0
    assert Applied.objects.filter(handler="sync").count() == 8


def test_a_new_group_from_latest_applies_only_what_comes_after_and_then_resumes(
    fresh_server: EmbeddedServer,
) -> None:
    def applied() -> list[int]:
        values = Applied.objects.filter(handler="sync").values_list("value", flat=True)
        return sorted(json.loads(value)["n"] for value in values)

    asyncio.run(publish(fresh_server, "sub-multi", [{"n": n} for n in range(3)]))

    stats = run_until(
        fresh_server,
        ("sub-multi",),
        2,
        group="late",
        start="latest",
        once_subscribed=lambda: publish(fresh_server, "sub-multi", [{"n": 3}, {"n": 4}]),
    )
    assert stats.received == 2
    assert applied() == [3, 4]

    # Restarted: the group resumes after its position (neither the start nor the end).
    asyncio.run(publish(fresh_server, "sub-multi", [{"n": 5}]))
    run_until(fresh_server, ("sub-multi",), 1, group="late", start="latest")
    assert applied() == [3, 4, 5]


@pytest.mark.slow
def test_the_subscriber_reconnects_after_the_server_is_killed_and_restarted(
    fresh_server: EmbeddedServer,
) -> None:
    async def main() -> Stats:
        settled: set[bytes] = set()  # the server may redeliver what it had not saved as acked
        counts = {5: asyncio.Event(), 10: asyncio.Event()}

        def on_settled(event: Any) -> None:
            settled.add(event.id)
            if len(settled) in counts:
                counts[len(settled)].set()

        subscriber = Subscriber(
            SubscriberOptions(topics=("sub-multi",), group="tests"),
            client_factory=lambda: client_for(fresh_server),
            on_settled=on_settled,
        )
        runner = asyncio.create_task(subscriber.run())
        await publish(fresh_server, "sub-multi", [{"n": n} for n in range(5)])
        await asyncio.wait_for(counts[5].wait(), 60)
        await asyncio.to_thread(fresh_server.restart)  # kill -9, same port and data
        # This process's channel to the port may still be in gRPC's reconnect backoff.
        for _ in range(100):
            try:
                await publish(fresh_server, "sub-multi", [{"n": n} for n in range(5, 10)])
                break
            except Unavailable:
                await asyncio.sleep(0.2)
        await asyncio.wait_for(counts[10].wait(), 60)
        subscriber.stop()
        return await asyncio.wait_for(runner, 30)

    asyncio.run(main())

    assert Applied.objects.filter(handler="sync").count() == 10
    assert Applied.objects.filter(handler="async").count() == 10


def test_an_event_whose_payload_does_not_decode_is_dead_lettered_with_its_bytes() -> None:
    wrapper = event_pb2.EventWrapper(
        id=bytes(10), topic_id=new_ulid(), event=b"\xff\x00 not an Event", offset=1
    )
    event = inbound_from(ReceivedEvent(wrapper, "sub-multi"))

    dispatch.handle_now(event)

    dead = DeadLetter.objects.get()
    assert dead.reason == DeadLetterReason.UNDECODABLE
    assert "does not decode" in dead.error
    assert bytes(dead.data) == b"\xff\x00 not an Event"
    assert dead.event_id == "0000000000000000"
    assert not Applied.objects.exists()


@pytest.mark.parametrize(
    ("concurrency", "batch_size", "window", "asked"),
    [
        (4, None, None, 256),  # 64 per concurrent slot
        (8, 0, None, 512),  # plain framing
        (4, 500, None, 1000),  # at least two batches: the next is filled while one applies
        (4, 500, 50, 50),  # ENSIGN_SUBSCRIBER_WINDOW wins
        (4, None, 0, 0),  # 0: the server decides
    ],
)
def test_the_window_asked_of_the_server(
    concurrency: int, batch_size: int | None, window: int | None, asked: int
) -> None:
    options = SubscriberOptions(
        topics=("t",), concurrency=concurrency, batch_size=batch_size, window=window
    )
    assert options.effective_window() == asked


def test_an_event_with_an_over_long_stable_id_and_type_is_applied_once(
    fresh_server: EmbeddedServer,
) -> None:
    stable = "s" * 80
    asyncio.run(
        publish(
            fresh_server,
            "sub-multi",
            [{"n": 1}, {"n": 1}],
            type_name="T" * 300,
            stable_ids=[stable] * 2,
        )
    )

    stats = run_until(fresh_server, ("sub-multi",), 2, concurrency=1)

    assert (stats.handled, stats.duplicates, stats.dead) == (2, 2, 0)
    assert list(Applied.objects.values_list("event_id", flat=True).distinct()) == [
        dispatch.storable_id(stable)
    ]

"""Publishing against the real embedded server: acks, nacks, callbacks, windows, many topics."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from django_ensign.client import Ack, Ensign, Event, Nack, NackCode, UnknownTopic, exceptions
from tests.client.conftest import make_client
from tests.support.server import EmbeddedServer


async def test_publish_returns_acks_with_commit_times(
    ensign_server: EmbeddedServer, topic_name: Callable[[], str], batch: bool
) -> None:
    topic = topic_name()
    async with make_client(ensign_server, batch=batch) as client:
        await client.create_topic(topic)
        first, second = Event(b'{"n": 1}', "application/json"), Event(b'{"n": 2}')
        await client.publish(topic, first)
        await client.publish(topic, [second])
        ack = await first.wait_for_ack(timeout=10)
        assert isinstance(ack, Ack)
        assert ack.id == first.local_id
        assert ack.committed.seconds > 0
        assert abs(ack.committed_at - datetime.now(UTC)) < timedelta(minutes=1)
        assert isinstance(await second.wait_for_ack(timeout=10), Ack)
        assert first.acked()
        assert first.published()
        assert first.committed == ack.committed


async def test_callbacks_get_each_outcome(client: Ensign, topic_name: Callable[[], str]) -> None:
    topic = topic_name()
    acks: list[Ack] = []
    sync_acks: list[Ack] = []

    async def on_ack(ack: Ack) -> None:
        acks.append(ack)

    events = [Event(b"%d" % i, "text/plain") for i in range(50)]
    await client.publish(topic, *events, on_ack=on_ack, ensure_exists=True)
    await client.publish(topic, Event(b"x", "text/plain"), on_ack=sync_acks.append)
    await client.flush(timeout=10)
    await client.close()
    assert sorted(a.id for a in acks) == sorted(e.local_id for e in events)
    assert len(sync_acks) == 1


async def test_async_callbacks_that_wait_finish_before_close_in_their_own_context(
    client: Ensign, topic_name: Callable[[], str]
) -> None:
    topic = topic_name()
    gate = asyncio.Event()
    seen: contextvars.ContextVar[bytes | None] = contextvars.ContextVar("seen", default=None)
    leaked: list[bytes] = []
    finished: list[bytes] = []
    events = [Event(b"%d" % i, "text/plain") for i in range(20)]

    async def on_ack(ack: Ack) -> None:
        if seen.get() is not None:
            leaked.append(ack.id)
        seen.set(ack.id)
        await gate.wait()
        if ack.id == events[0].local_id:
            raise RuntimeError("a failing callback must not stop the others")
        finished.append(ack.id)

    await client.publish(topic, *events, on_ack=on_ack, ensure_exists=True)
    await client.flush(timeout=10)
    assert not finished
    gate.set()
    await client.close()
    assert sorted(finished) == sorted(e.local_id for e in events[1:])
    assert not leaked
    assert seen.get() is None


async def test_archived_topic_nacks_with_id_code_and_error(
    client: Ensign, topic_name: Callable[[], str]
) -> None:
    topic = topic_name()
    await client.create_topic(topic)
    await client.archive_topic(topic)
    nacks: list[Nack] = []
    event = Event(b"late", "text/plain")
    await client.publish(topic, event, on_nack=nacks.append)
    outcome = await event.wait_for_ack(timeout=10)
    assert isinstance(outcome, Nack)
    assert outcome.id == event.local_id
    assert outcome.code == NackCode.TOPIC_ARCHIVED
    assert outcome.error == "topic is archived"
    assert event.nacked()
    assert event.error is outcome
    await client.flush()
    assert [n.code for n in nacks] == [NackCode.TOPIC_ARCHIVED]


async def test_oversized_event_is_nacked_not_a_dead_stream(
    client: Ensign, topic_name: Callable[[], str]
) -> None:
    topic = topic_name()
    big = Event(b"x" * 5_300_000, "application/octet-stream")
    small = Event(b"ok", "text/plain")
    await client.publish(topic, big, small, ensure_exists=True)
    outcome = await big.wait_for_ack(timeout=20)
    assert isinstance(outcome, Nack)
    assert outcome.code == NackCode.MAX_EVENT_SIZE_EXCEEDED
    assert isinstance(await small.wait_for_ack(timeout=20), Ack)


async def test_more_than_eleven_topics_on_one_client(
    client: Ensign, topic_name: Callable[[], str], batch: bool
) -> None:
    topics = [topic_name() for _ in range(15)]
    events: dict[str, list[Event]] = {}
    for topic in topics:
        # Created one by one while the stream is open: each is new to its topic map.
        events[topic] = [Event(b"%d" % i, "text/plain") for i in range(3)]
        await client.publish(topic, events[topic], ensure_exists=True)
    await client.flush(timeout=20)
    for topic in topics:
        assert all(e.acked() for e in events[topic]), topic
        stored = await (await client.query(f"SELECT * FROM {topic}")).fetchall()
        assert [e.data for e in stored] == [b"0", b"1", b"2"]


async def test_topic_created_elsewhere_after_the_stream_opened(
    ensign_server: EmbeddedServer, client: Ensign, topic_name: Callable[[], str]
) -> None:
    first, later = topic_name(), topic_name()
    await client.publish(first, Event(b"a", "text/plain"), ensure_exists=True)
    await client.flush(timeout=10)
    async with make_client(ensign_server) as other:
        await other.create_topic(later)
    event = Event(b"b", "text/plain")
    await client.publish(later, event)
    assert isinstance(await event.wait_for_ack(timeout=10), Ack)


async def test_unknown_topic_without_ensure_exists(
    client: Ensign, topic_name: Callable[[], str]
) -> None:
    with pytest.raises(UnknownTopic, match="ensure_exists"):
        await client.publish(topic_name(), Event(b"x", "text/plain"))


@pytest.mark.parametrize(
    ("topic", "events", "error"),
    [
        ("", (Event(b"x"),), exceptions.InvalidTopicName),
        (42, (Event(b"x"),), exceptions.InvalidTopicName),
        ("t", (), exceptions.InvalidEvent),
        ("t", (b"raw bytes",), exceptions.InvalidEvent),
    ],
)
async def test_bad_publish_input_fails_before_the_network(
    client: Ensign, topic: object, events: tuple[object, ...], error: type[Exception]
) -> None:
    with pytest.raises(error):
        await client.publish(topic, *events)  # type: ignore[arg-type]


async def test_publish_by_topic_id(client: Ensign, topic_name: Callable[[], str]) -> None:
    topic_id = await client.create_topic(topic_name())
    event = Event(b"by id", "text/plain")
    await client.publish(topic_id, event)
    assert isinstance(await event.wait_for_ack(timeout=10), Ack)


async def test_in_flight_window_bounds_publish(
    ensign_server: EmbeddedServer, topic_name: Callable[[], str], batch: bool
) -> None:
    topic = topic_name()
    async with make_client(ensign_server, max_in_flight=32, batch=batch) as client:
        await client.create_topic(topic)
        publisher_peak = 0

        def on_ack(_: Ack) -> None:
            nonlocal publisher_peak
            publisher_peak = max(publisher_peak, client._publisher().in_flight)

        events = [Event(b"%d" % i, "text/plain") for i in range(500)]
        for event in events:
            await client.publish(topic, event, on_ack=on_ack)
            assert client._publisher().in_flight <= 32
        await client.flush(timeout=30)
        assert all(e.acked() for e in events)
        assert publisher_peak <= 32


async def test_close_waits_for_every_outcome(
    ensign_server: EmbeddedServer, topic_name: Callable[[], str]
) -> None:
    topic = topic_name()
    client = make_client(ensign_server)
    await client.create_topic(topic)
    events = [Event(b"%d" % i, "text/plain") for i in range(1000)]
    await client.publish(topic, events)
    await client.close()
    assert all(e.acked() for e in events)
    async with make_client(ensign_server) as reader:
        stored = await (await reader.query(f"SELECT * FROM {topic}")).fetchall()
    assert len(stored) == 1000


async def test_leaving_async_with_waits_too(
    ensign_server: EmbeddedServer, topic_name: Callable[[], str]
) -> None:
    topic = topic_name()
    async with make_client(ensign_server) as client:
        events = [Event(b"%d" % i, "text/plain") for i in range(300)]
        await client.publish(topic, events, ensure_exists=True)
    assert all(e.acked() for e in events)
    with pytest.raises(exceptions.ClientClosed):
        await client.publish(topic, Event(b"x"))


async def test_event_with_no_reply_before_its_deadline_times_out(
    fresh_server: EmbeddedServer, topic_name: Callable[[], str]
) -> None:
    topic = topic_name()
    client = make_client(fresh_server, ack_timeout=1.0)
    await client.publish(topic, Event(b"first", "text/plain"), ensure_exists=True)
    await client.flush(timeout=10)
    await asyncio.to_thread(fresh_server.kill)
    stranded = Event(b"second", "text/plain")
    nacks: list[Nack] = []
    await client.publish(topic, stranded, on_nack=nacks.append)
    with pytest.raises(exceptions.PublishTimeout):
        await stranded.wait_for_ack(timeout=0.1)
    with pytest.raises(exceptions.PublishTimeout):
        await stranded.wait_for_ack()
    assert [(n.id, n.code) for n in nacks] == [(stranded.local_id, NackCode.TIMEOUT)]
    await client.publish(topic, Event(b"third", "text/plain"))
    with pytest.raises(exceptions.FlushTimeout):
        await client.flush(timeout=0.2)
    await client.close()


async def test_a_publish_waiting_for_room_ends_when_deadlines_pass_with_no_server(
    fresh_server: EmbeddedServer, topic_name: Callable[[], str]
) -> None:
    # More events than the window in one call: the first ones' deadlines must free room.
    client = make_client(fresh_server, max_in_flight=3, ack_timeout=1.0)
    topic_id = await client.create_topic(topic_name())
    await asyncio.to_thread(fresh_server.kill)
    events = [Event(b"%d" % i, "text/plain") for i in range(7)]
    await asyncio.wait_for(client.publish(topic_id, events), 15)
    for event in events:
        with pytest.raises(exceptions.PublishTimeout):
            await asyncio.wait_for(event.wait_for_ack(), 15)
    await asyncio.wait_for(client.close(), 15)


def test_events_whose_loop_ends_before_their_outcome_fail_loudly(
    fresh_server: EmbeddedServer, topic_name: Callable[[], str]
) -> None:
    # One client, two asyncio.run() calls; the first ends with its event unanswered.
    client = make_client(fresh_server, ack_timeout=2.0)
    event = Event(b"orphan", "text/plain")
    nacks: list[Nack] = []

    async def on_nack(nack: Nack) -> None:
        await asyncio.sleep(0.01)  # a callback that waits still finishes
        nacks.append(nack)

    async def publish_then_leave() -> None:
        topic_id = await client.create_topic(topic_name())
        await asyncio.to_thread(fresh_server.kill)
        await client.publish(topic_id, event, on_nack=on_nack)

    async def look_later() -> None:
        with pytest.raises(exceptions.LoopEnded):
            await asyncio.wait_for(event.wait_for_ack(), 10)
        await asyncio.wait_for(client.close(), 10)

    asyncio.run(publish_then_leave())
    assert [n.id for n in nacks] == [event.local_id]
    asyncio.run(look_later())


async def test_calls_after_close_are_refused(ensign_server: EmbeddedServer) -> None:
    client = make_client(ensign_server)
    assert (await client.status()).version
    await client.close()
    for call in (client.status, client.get_topics, lambda: client.create_topic("after-close")):
        with pytest.raises(exceptions.ClientClosed):
            await call()
    assert client._connection.current() is None  # no channel opened again


async def test_flush_without_a_timeout_waits_for_every_outcome(
    client: Ensign, topic_name: Callable[[], str]
) -> None:
    events = [Event(b"%d" % i, "text/plain") for i in range(20)]
    await client.publish(topic_name(), events, ensure_exists=True)
    await client.flush(timeout=None)
    assert all(event.acked() for event in events)


async def test_flush_rejects_non_positive_timeout(client: Ensign) -> None:
    with pytest.raises(exceptions.ConfigurationError):
        await client.flush(timeout=0)


async def test_events_queued_before_a_refused_one_are_still_sent(
    client: Ensign, topic_name: Callable[[], str]
) -> None:
    # The call raises at the repeated event; the one queued before it must not wait for
    # the next publish to be sent.
    topic = topic_name()
    await client.create_topic(topic)
    first = Event(b"first", "text/plain")
    with pytest.raises(exceptions.InvalidEvent, match="already being published"):
        await client.publish(topic, first, first)
    assert isinstance(await first.wait_for_ack(timeout=10), Ack)

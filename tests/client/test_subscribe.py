"""Subscriptions against the real embedded server: live tail, groups, queries, odd events."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from django_ensign.client import Ensign, Event, NackCode, ReceivedEvent, exceptions, handshake
from tests.client.conftest import make_client
from tests.support.server import EmbeddedServer


class RawEvent(Event):
    """An event whose serialized payload is whatever the test says."""

    def __init__(self, payload: bytes) -> None:
        super().__init__(b"placeholder", "text/plain")
        self.payload = payload

    def serialize(self) -> bytes:
        return self.payload


async def take(subscription: object, n: int, within: float = 20) -> list[ReceivedEvent]:
    """The next ``n`` events of a subscription."""

    async def collect() -> list[ReceivedEvent]:
        out: list[ReceivedEvent] = []
        async for event in subscription:  # type: ignore[attr-defined]
            out.append(event)
            if len(out) == n:
                break
        return out

    return await asyncio.wait_for(collect(), within)


def new_group() -> str:
    """A consumer group name no other test uses."""
    return f"g{uuid.uuid4().hex[:12]}"


async def stored(client: Ensign, topic: str, events: Event | list[Event]) -> None:
    """Create ``topic`` holding ``events``, each one acked by the server."""
    await client.create_topic(topic)
    await client.publish(topic, events)
    await client.flush(timeout=10)


async def test_live_events_with_all_their_fields(
    ensign_server: EmbeddedServer, topic_name: Callable[[], str], batch: bool
) -> None:
    topic = topic_name()
    async with make_client(ensign_server, batch=batch) as client:
        await client.create_topic(topic)
        async with client.subscribe(topic) as subscription:
            sent = [
                Event(
                    b'{"n": %d}' % i,
                    "application/json",
                    schema_name="Reading",
                    schema_version="1.2.3",
                    meta={"i": str(i)},
                )
                for i in range(5)
            ]
            await client.publish(topic, sent)
            received = await take(subscription, 5)
            for event in received:
                assert await event.ack()
                assert event.acked()
    assert [e.data for e in received] == [e.data for e in sent]
    assert [e.offset for e in received] == [1, 2, 3, 4, 5]
    first = received[0]
    assert (first.topic, first.type_name, first.type_version) == (topic, "Reading", "1.2.3")
    assert (first.mimetype_name, first.meta) == ("application/json", {"i": "0"})
    assert len(first.id) == 10
    ack = await sent[0].wait_for_ack()
    assert first.committed_at == ack.committed_at  # type: ignore[union-attr]


async def test_one_subscription_over_several_topics(
    client: Ensign, topic_name: Callable[[], str]
) -> None:
    topics = [topic_name() for _ in range(3)]
    topic_ids = [await client.create_topic(t) for t in topics]
    # One by name, the others by id.
    async with client.subscribe(topics[0], *topic_ids[1:]) as subscription:
        for topic in topics:
            await client.publish(topic, Event(topic.encode(), "text/plain"))
        received = await take(subscription, 3)
    assert sorted((e.topic, e.data) for e in received) == sorted((t, t.encode()) for t in topics)


async def test_odd_events_are_handed_over_and_the_subscription_goes_on(
    client: Ensign, topic_name: Callable[[], str]
) -> None:
    topic = topic_name()
    await client.create_topic(topic)
    odd_mimetype = Event(b"strange", "text/plain")
    odd_mimetype.mimetype = 777
    async with client.subscribe(topic) as subscription:
        await client.publish(topic, RawEvent(b"\xff\xfe\xfd"))
        await client.publish(topic, RawEvent(b""))
        await client.publish(topic, odd_mimetype)
        await client.publish(topic, Event(b"fine", "text/plain"))
        garbage, empty, strange, fine = await take(subscription, 4)
    assert garbage.decode_error
    assert garbage.raw == b"\xff\xfe\xfd"
    assert empty.decode_error == "empty event"
    assert (strange.mimetype, strange.known_mimetype, strange.data) == (777, False, b"strange")
    assert fine.data == b"fine"
    assert fine.decode_error is None


async def test_consumer_group_resumes_after_the_last_ack(
    ensign_server: EmbeddedServer, topic_name: Callable[[], str], batch: bool
) -> None:
    topic = topic_name()
    group = new_group()
    async with make_client(ensign_server, batch=batch) as client:
        await stored(client, topic, [Event(b"%d" % i, "text/plain") for i in range(10)])
        async with client.subscribe(topic, consumer_group=group) as first:
            for event in await take(first, 4):
                await event.ack()
        async with client.subscribe(topic, consumer_group=group) as second:
            rest = await take(second, 6)
            for event in rest:
                await event.ack()
    assert [e.data for e in rest] == [b"%d" % i for i in range(4, 10)]


async def test_acking_after_the_subscription_closed_is_refused_and_the_group_gets_it_again(
    ensign_server: EmbeddedServer, topic_name: Callable[[], str]
) -> None:
    topic = topic_name()
    group = new_group()
    async with make_client(ensign_server) as client:
        await stored(client, topic, [Event(b"late", "text/plain")])
        async with client.subscribe(topic, consumer_group=group) as first:
            (event,) = await take(first, 1)
        with pytest.raises(exceptions.CouldNotAck):
            await event.ack()
        with pytest.raises(exceptions.CouldNotAck):
            await event.nack()
        assert not event.acked()
        assert not event.nacked()
        async with client.subscribe(topic, consumer_group=group) as second:
            (again,) = await take(second, 1)
            await again.ack()
    assert again.data == b"late"


async def test_nacked_event_is_delivered_again_to_the_group(
    client: Ensign, topic_name: Callable[[], str]
) -> None:
    topic = topic_name()
    await stored(client, topic, Event(b"retry me", "text/plain"))
    async with client.subscribe(topic, consumer_group=new_group()) as sub:
        (first,) = await take(sub, 1)
        assert await first.nack(NackCode.UNPROCESSED, "handler failed")
        assert first.nacked()
        assert not await first.ack()
        (again,) = await take(sub, 1)
        await again.ack()
    assert again.id == first.id
    assert again.data == b"retry me"


async def test_query_subscription_replays_matching_events_then_goes_live(
    client: Ensign, topic_name: Callable[[], str]
) -> None:
    topic = topic_name()
    await stored(
        client,
        topic,
        [Event(b"%d" % i, "text/plain", meta={"color": c}) for i, c in enumerate("rgr")],
    )
    query = f"SELECT * FROM {topic} WHERE color = 'r'"
    async with client.subscribe(topic, query=query) as sub:
        replayed = await take(sub, 2)
        await client.publish(topic, Event(b"live", "text/plain", meta={"color": "r"}))
        (live,) = await take(sub, 1)
    assert [e.data for e in replayed] == [b"0", b"2"]
    assert live.data == b"live"


async def test_subscribe_to_an_unknown_topic_is_refused(client: Ensign) -> None:
    await client.ensure_topic_exists("client-tests-anchor")
    with pytest.raises(exceptions.FailedPrecondition, match="no topics available"):
        await client.subscribe("no-such-topic-here").open()


async def test_subscribe_needs_a_topic(client: Ensign) -> None:
    with pytest.raises(exceptions.InvalidTopicName):
        client.subscribe()


async def test_framing_follows_the_batch_flag(
    ensign_server: EmbeddedServer, topic_name: Callable[[], str], batch: bool
) -> None:
    topic = topic_name()
    async with make_client(ensign_server, batch=batch) as client:
        await client.create_topic(topic)
        async with client.subscribe(topic) as subscription:
            await client.publish(topic, [Event(b"%d" % i, "text/plain") for i in range(3)])
            for event in await take(subscription, 3):
                await event.ack()
            # Acks go out as one AckBatch only where the server offered the extension.
            assert subscription._batch_acks is batch
            assert (client._publisher()._chunk > 64) is batch


def test_subscribe_can_be_called_before_any_loop_runs(ensign_server: EmbeddedServer) -> None:
    # As the official SDK's async generator: nothing touches the network until iterated.
    subscription = make_client(ensign_server).subscribe("anything")
    assert subscription.topics == {}


async def test_window_caps_unacked_deliveries(
    client: Ensign, topic_name: Callable[[], str]
) -> None:
    topic = topic_name()
    await stored(client, topic, [Event(b"%d" % i, "text/plain") for i in range(6)])
    group = new_group()
    async with client.subscribe(topic, consumer_group=group, window=2, batch_size=1) as sub:
        first_two = await take(sub, 2)
        # Nothing more comes until one of them is acked.
        with pytest.raises(TimeoutError):
            await take(sub, 1, within=0.5)
        await first_two[0].ack()
        (third,) = await take(sub, 1)
    assert [e.data for e in [*first_two, third]] == [b"0", b"1", b"2"]


async def test_consumer_group_from_latest_gets_only_new_events_then_resumes(
    ensign_server: EmbeddedServer, topic_name: Callable[[], str], batch: bool
) -> None:
    topic = topic_name()
    group = new_group()
    async with make_client(ensign_server, batch=batch) as client:
        await stored(client, topic, [Event(b"old-%d" % i, "text/plain") for i in range(3)])
        async with client.subscribe(topic, consumer_group=group, start="latest") as first:
            await client.publish(topic, [Event(b"new-%d" % i, "text/plain") for i in range(2)])
            new = await take(first, 2)
            for event in new:
                await event.ack()
        # Away, then back: the group resumes after its acks, whatever start says.
        await client.publish(topic, Event(b"while-away", "text/plain"))
        await client.flush(timeout=10)
        async with client.subscribe(topic, consumer_group=group, start="latest") as second:
            (resumed,) = await take(second, 1)
            await resumed.ack()
    assert [e.data for e in new] == [b"new-0", b"new-1"]
    assert resumed.data == b"while-away"


async def test_a_group_that_started_latest_resumes_there_before_any_ack(
    client: Ensign, topic_name: Callable[[], str]
) -> None:
    topic = topic_name()
    group = new_group()
    await stored(client, topic, Event(b"old", "text/plain"))
    async with client.subscribe(topic, consumer_group=group, start="latest"):
        pass  # opened (the server has recorded the group's start), nothing delivered
    await client.publish(topic, Event(b"while-away", "text/plain"))
    await client.flush(timeout=10)
    async with client.subscribe(topic, consumer_group=group) as again:
        (event,) = await take(again, 1)
        await event.ack()
    assert event.data == b"while-away"


async def test_default_start_of_a_new_group_is_the_first_event(
    client: Ensign, topic_name: Callable[[], str]
) -> None:
    topic = topic_name()
    await stored(client, topic, [Event(b"%d" % i, "text/plain") for i in range(2)])
    default = client.subscribe(topic, consumer_group=new_group())
    earliest = client.subscribe(topic, consumer_group=new_group(), start="earliest")
    for subscription in (default, earliest):
        async with subscription:
            received = await take(subscription, 2)
        assert [e.data for e in received] == [b"0", b"1"]


async def test_an_unknown_start_is_a_configuration_error(client: Ensign) -> None:
    with pytest.raises(exceptions.ConfigurationError, match="earliest"):
        client.subscribe("anything", consumer_group="g", start="newest")  # type: ignore[arg-type]


async def test_an_open_cancelled_midway_cancels_its_stream(
    client: Ensign, topic_name: Callable[[], str]
) -> None:
    # A poll like wait_for(subscription.__anext__(), 0.001) can cancel the open after the
    # call started: left open, the server would deliver the group's events to a stream
    # nobody reads. The subscription's own opener is used to stop at that point.
    topic = topic_name()
    await client.create_topic(topic)
    subscription = client.subscribe(topic, consumer_group=f"g-{uuid.uuid4().hex}")
    calls: list[Any] = []
    started = asyncio.Event()

    async def start() -> Any:
        call = await subscription._start()
        calls.append(call)
        started.set()
        return call

    opening = asyncio.create_task(handshake.open_stream(start, subscription._request))
    await started.wait()
    opening.cancel()
    with pytest.raises(asyncio.CancelledError):
        await opening
    assert calls[0].cancelled()
    await subscription.close()

"""Publishing encoded events: outcomes by local id, windows, request limits, deadlines, ids."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from django_ensign.client import Ack, Ensign, Nack, NackCode
from django_ensign.client.events import encode_event, new_local_id
from django_ensign.client.exceptions import InvalidEvent, UnknownTopic
from tests.client.conftest import encoded, make_client
from tests.support.server import EmbeddedServer


async def test_encoded_events_are_acked_by_their_local_ids_and_stored(
    ensign_server: EmbeddedServer, topic_name: Callable[[], str], batch: bool
) -> None:
    topic = topic_name()
    events = [encoded(n) for n in range(300)]
    acks: list[Ack] = []
    async with make_client(ensign_server, batch=batch) as client:
        await client.publish_encoded(topic, events, on_ack=acks.append, ensure_exists=True)
        await client.flush(timeout=10)
        stored = await (await client.query(f"SELECT * FROM {topic}")).fetchall()
    assert sorted(ack.id for ack in acks) == sorted(local_id for local_id, _ in events)
    assert all(ack.committed.seconds > 0 for ack in acks)
    assert sorted(int(e.meta["n"]) for e in stored) == list(range(300))
    assert {
        (e.type_name, e.type_version, e.mimetype_name, e.data) for e in stored if e.meta["n"] == "7"
    } == {("Count", "1.0.0", "text/plain", b"7")}


async def test_no_events_only_look_the_topic_up(
    ensign_server: EmbeddedServer, topic_name: Callable[[], str]
) -> None:
    topic = topic_name()
    async with make_client(ensign_server) as client:
        with pytest.raises(UnknownTopic):
            await client.publish_encoded(topic, [])
        await client.publish_encoded(topic, [], ensure_exists=True)
        assert client.topics.id(topic) is not None
        assert await client.topic_exists(topic)
        stored = await (await client.query(f"SELECT * FROM {topic}")).fetchall()
    assert stored == []


async def test_an_encoded_event_with_no_reply_reaches_on_nack_as_a_timeout(
    fresh_server: EmbeddedServer, topic_name: Callable[[], str]
) -> None:
    client = make_client(fresh_server, ack_timeout=1.0)
    topic_id = await client.create_topic(topic_name())
    await asyncio.to_thread(fresh_server.kill)
    stranded = encoded(1)
    nacks: list[Nack] = []
    await client.publish_encoded(topic_id, [stranded], on_nack=nacks.append)
    await client.flush(timeout=10)
    assert [(n.id, n.code) for n in nacks] == [(stranded[0], NackCode.TIMEOUT)]
    await asyncio.wait_for(client.close(), 15)


async def test_one_call_of_many_events_keeps_to_the_window(
    ensign_server: EmbeddedServer, topic_name: Callable[[], str], batch: bool
) -> None:
    peak = 0
    acked: list[bytes] = []
    async with make_client(ensign_server, max_in_flight=32, batch=batch) as client:

        def on_ack(ack: Ack) -> None:
            nonlocal peak
            peak = max(peak, client._publisher().in_flight)
            acked.append(ack.id)

        topic = topic_name()
        events = [encoded(n) for n in range(500)]
        for start in range(0, 500, 100):
            calls = events[start : start + 100]
            await client.publish_encoded(topic, calls, on_ack=on_ack, ensure_exists=True)
            assert client._publisher().in_flight <= 32  # what the last chunk left in flight
        await client.flush(timeout=30)
    assert sorted(acked) == sorted(local_id for local_id, _ in events)
    assert peak <= 32


@pytest.mark.timeout(120)
async def test_calls_bigger_than_one_request_are_split_across_requests(
    client: Ensign, topic_name: Callable[[], str]
) -> None:
    # 24 events of 3 MB are more than one gRPC message carries (64 MiB): sent as one
    # request, they would break the stream at every resend. 1,500 small ones are more
    # than a batch request holds (1,000), and more than one chunk of a call (512).
    big = [
        (new_local_id(), encode_event(b"x" * 3_000_000, "text/plain", "Big", "1.0.0", {}))
        for _ in range(24)
    ]
    small = [encoded(n) for n in range(1500)]
    acked: set[bytes] = set()
    topic = topic_name()
    await client.publish_encoded(topic, big, on_ack=lambda a: acked.add(a.id), ensure_exists=True)
    await client.publish_encoded(topic, small, on_ack=lambda a: acked.add(a.id))
    await client.flush(timeout=60)
    assert acked == {local_id for local_id, _ in big + small}


async def test_a_nacked_event_leaves_the_rest_of_its_call_acked(
    client: Ensign, topic_name: Callable[[], str]
) -> None:
    topic = topic_name()
    events = [
        encoded(1),
        (new_local_id(), encode_event(b"x" * 5_300_000, "text/plain", "T", "1.0.0", {})),
        encoded(2),
    ]
    acks: list[bytes] = []
    nacks: list[Nack] = []
    await client.publish_encoded(
        topic,
        events,
        on_ack=lambda ack: acks.append(ack.id),
        on_nack=nacks.append,
        ensure_exists=True,
    )
    await client.flush(timeout=30)
    assert sorted(acks) == sorted([events[0][0], events[2][0]])
    assert [(n.id, n.code) for n in nacks] == [(events[1][0], NackCode.MAX_EVENT_SIZE_EXCEEDED)]


async def test_local_ids_in_flight_twice_are_refused_before_sending(
    client: Ensign, topic_name: Callable[[], str]
) -> None:
    topic = topic_name()
    first = encoded(1)
    with pytest.raises(InvalidEvent, match="unique"):
        await client.publish_encoded(topic, [first, first], ensure_exists=True)
    acks: list[bytes] = []
    await client.publish_encoded(topic, [first], on_ack=lambda ack: acks.append(ack.id))
    with pytest.raises(InvalidEvent, match="unique"):
        await client.publish_encoded(topic, [encoded(2), (first[0], first[1])])
    await client.flush(timeout=10)
    assert acks == [first[0]]
    # A repeat beyond the first chunk (512 events) is refused before any chunk is queued.
    many = [encoded(n) for n in range(600)]
    with pytest.raises(InvalidEvent, match="unique"):
        await client.publish_encoded(topic, [*many, many[0]])
    assert client._publisher().in_flight == 0

"""The Subscribe stream over real gRPC: live tail, consumer groups, query replay, batches (§4)."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2

from django_ensign.proto.api.v1beta1 import ensign_pb2, event_pb2, groups_pb2, query_pb2
from django_ensign.wire import ids
from tests.server.conftest import (
    EOF,
    Conn,
    connect,
    event_req,
    make_event,
    open_req,
    publish_all,
    wrapper,
)
from tests.support.server import EmbeddedServer

Code = grpc.StatusCode


async def subscribe(
    c: Conn,
    topics: list[str] | None = None,
    *,
    group: str | None = None,
    query: str | None = None,
    batch_size: int = 0,
    window: int = 0,
    delivery_timeout: float | None = None,
    latest: bool = False,
) -> Any:
    sub = ensign_pb2.Subscription(
        client_id="sub-tests", topics=topics or [], batch_size=batch_size, window=window
    )
    if latest:
        sub.start = ensign_pb2.Subscription.LATEST
    if group is not None:
        sub.group.CopyFrom(groups_pb2.ConsumerGroup(name=group))
        if delivery_timeout is not None:
            seconds = int(delivery_timeout)
            nanos = int((delivery_timeout - seconds) * 1e9)
            sub.group.delivery_timeout.CopyFrom(duration_pb2.Duration(seconds=seconds, nanos=nanos))
    if query is not None:
        sub.query.CopyFrom(query_pb2.Query(query=query))
    call = c.subscribe_stream()
    await call.write(ensign_pb2.SubscribeRequest(subscription=sub))
    ready = await call.read()
    assert ready.WhichOneof("embed") == "ready", ready
    return call


async def read_events(call: Any, count: int) -> list[event_pb2.EventWrapper]:
    out: list[event_pb2.EventWrapper] = []
    while len(out) < count:
        reply = await asyncio.wait_for(call.read(), 20)
        kind = reply.WhichOneof("embed")
        if kind == "event":
            out.append(reply.event)
        else:
            assert kind == "events", reply
            out.extend(reply.events.events)
    return out


def data_of(events: list[event_pb2.EventWrapper]) -> list[bytes]:
    return [event_pb2.Event.FromString(e.event).data for e in events]


async def ack(call: Any, event: event_pb2.EventWrapper) -> None:
    await call.write(ensign_pb2.SubscribeRequest(ack=ensign_pb2.Ack(id=event.id)))


async def finish(call: Any) -> None:
    """Half-close and wait for the end: the server has then read every ack sent before."""
    await call.done_writing()
    while await call.read() is not EOF:
        pass
    assert await call.code() == Code.OK


def group_name() -> str:
    return "g-" + ids.ulid_to_str(ids.new_ulid())


async def test_live_tail_gets_new_events_in_order(conn: Conn) -> None:
    topic = await conn.create_topic()
    await publish_all(conn, topic.id, [make_event(b"before")])
    call = await subscribe(conn, [topic.name])
    await publish_all(conn, topic.id, [make_event(b"%d" % i) for i in range(5)])
    events = await read_events(call, 5)
    assert data_of(events) == [b"0", b"1", b"2", b"3", b"4"]
    assert [e.offset for e in events] == [2, 3, 4, 5, 6]
    for event in events:
        assert event.topic_id == topic.id
        assert len(event.id) == 10
        assert event.local_id == b""
        assert event.committed.seconds > 0
        assert event.publisher.publisher_id
    call.cancel()


async def test_ready_echoes_client_id_and_lists_topics(conn: Conn) -> None:
    topic = await conn.create_topic()
    call = conn.subscribe_stream()
    await call.write(
        ensign_pb2.SubscribeRequest(
            subscription=ensign_pb2.Subscription(client_id="me", topics=[topic.name])
        )
    )
    ready = (await call.read()).ready
    assert ready.client_id == "me"
    assert dict(ready.topics) == {topic.name: topic.id}
    assert ready.batch.max_events > 0
    call.cancel()


async def test_first_message_must_be_a_subscription(conn: Conn) -> None:
    await conn.create_topic()
    call = conn.subscribe_stream()
    await call.write(ensign_pb2.SubscribeRequest(ack=ensign_pb2.Ack(id=b"x")))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call.read()
    assert (err.value.code(), err.value.details()) == (
        Code.FAILED_PRECONDITION,
        "must send subscription to initialize stream",
    )


async def test_unmatched_topics_fail(conn: Conn) -> None:
    await conn.create_topic()
    call = conn.subscribe_stream()
    await call.write(
        ensign_pb2.SubscribeRequest(subscription=ensign_pb2.Subscription(topics=["no-such-topic"]))
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call.read()
    assert (err.value.code(), err.value.details()) == (
        Code.FAILED_PRECONDITION,
        "no topics available",
    )


async def test_project_without_topics_fails(fresh_server: EmbeddedServer) -> None:
    c = await connect(fresh_server)
    try:
        call = c.subscribe_stream()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call.read()
        assert (err.value.code(), err.value.details()) == (
            Code.FAILED_PRECONDITION,
            "no topics available",
        )
    finally:
        await c.channel.close()


async def test_slow_subscriber_is_back_pressured_not_skipped(conn: Conn) -> None:
    topic = await conn.create_topic()
    call = await subscribe(conn, [topic.name])
    payload = b"x" * 2000
    count = 3000
    await publish_all(conn, topic.id, [make_event(payload + b"%d" % i) for i in range(count)])
    events = await read_events(call, count)
    assert [e.offset for e in events] == list(range(1, count + 1))
    call.cancel()


async def test_group_starts_at_the_beginning_and_resumes_after_acks(conn: Conn) -> None:
    topic = await conn.create_topic()
    await publish_all(conn, topic.id, [make_event(b"%d" % i) for i in range(5)])
    group = group_name()
    call = await subscribe(conn, [topic.name], group=group)
    events = await read_events(call, 5)
    assert data_of(events) == [b"0", b"1", b"2", b"3", b"4"]
    for event in events[:3]:
        await ack(call, event)
    await finish(call)
    again = await subscribe(conn, [topic.name], group=group)
    events = await read_events(again, 2)
    assert data_of(events) == [b"3", b"4"]
    for event in events:
        await ack(again, event)
    await publish_all(conn, topic.id, [make_event(b"new")])
    assert data_of(await read_events(again, 1)) == [b"new"]
    again.cancel()


async def test_nacked_event_is_delivered_again(conn: Conn) -> None:
    topic = await conn.create_topic()
    await publish_all(conn, topic.id, [make_event(b"a"), make_event(b"b")])
    call = await subscribe(conn, [topic.name], group=group_name())
    first, second = await read_events(call, 2)
    await ack(call, second)
    await call.write(
        ensign_pb2.SubscribeRequest(
            nack=ensign_pb2.Nack(id=first.id, code=ensign_pb2.Nack.UNPROCESSED, error="try later")
        )
    )
    (redelivered,) = await read_events(call, 1)
    assert redelivered.id == first.id
    assert data_of([redelivered]) == [b"a"]
    call.cancel()


async def test_event_not_acked_in_time_is_delivered_again(conn: Conn) -> None:
    topic = await conn.create_topic()
    await publish_all(conn, topic.id, [make_event(b"slow")])
    call = await subscribe(conn, [topic.name], group=group_name(), delivery_timeout=0.3)
    (first,) = await read_events(call, 1)
    (again,) = await read_events(call, 1)
    assert again.id == first.id
    call.cancel()


async def test_events_of_a_crashed_subscriber_go_to_the_next_one(conn: Conn) -> None:
    topic = await conn.create_topic()
    await publish_all(conn, topic.id, [make_event(b"%d" % i) for i in range(3)])
    group = group_name()
    crashed = await subscribe(conn, [topic.name], group=group)
    await read_events(crashed, 3)
    crashed.cancel()
    survivor = await subscribe(conn, [topic.name], group=group)
    assert data_of(await read_events(survivor, 3)) == [b"0", b"1", b"2"]
    survivor.cancel()


async def test_window_bounds_unacked_events(conn: Conn) -> None:
    topic = await conn.create_topic()
    await publish_all(conn, topic.id, [make_event(b"%d" % i) for i in range(4)])
    call = await subscribe(conn, [topic.name], group=group_name(), window=2)
    first = await read_events(call, 2)
    assert data_of(first) == [b"0", b"1"]
    pending = asyncio.ensure_future(call.read())
    done, _ = await asyncio.wait({pending}, timeout=0.3)
    assert not done, "a third event arrived while the window was full"
    await ack(call, first[0])
    reply = await asyncio.wait_for(pending, 20)
    assert data_of([reply.event]) == [b"2"]
    call.cancel()


async def test_query_replays_matching_events_then_continues_live(conn: Conn) -> None:
    topic = await conn.create_topic()
    await publish_all(
        conn,
        topic.id,
        [
            make_event(b"old-a", metadata={"color": "red"}),
            make_event(b"old-b", metadata={"color": "blue"}),
            make_event(b"old-c", metadata={"color": "red"}),
        ],
    )
    call = await subscribe(
        conn, [topic.name], query=f"SELECT * FROM {topic.name} WHERE color = 'red'"
    )
    assert data_of(await read_events(call, 2)) == [b"old-a", b"old-c"]
    await publish_all(
        conn,
        topic.id,
        [
            make_event(b"new-blue", metadata={"color": "blue"}),
            make_event(b"new-red", metadata={"color": "red"}),
        ],
    )
    assert data_of(await read_events(call, 1)) == [b"new-red"]
    call.cancel()


async def test_bad_query_is_invalid(conn: Conn) -> None:
    topic = await conn.create_topic()
    for query, details in [
        ("SELEC nonsense", None),
        ("SELECT * FROM no_such_topic", "unknown topic in query"),
    ]:
        call = conn.subscribe_stream()
        await call.write(
            ensign_pb2.SubscribeRequest(
                subscription=ensign_pb2.Subscription(
                    topics=[topic.name], query=query_pb2.Query(query=query)
                )
            )
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call.read()
        assert err.value.code() == Code.INVALID_ARGUMENT
        if details:
            assert err.value.details() == details


async def test_batches_and_ack_batches(conn: Conn) -> None:
    topic = await conn.create_topic()
    await publish_all(conn, topic.id, [make_event(b"%d" % i) for i in range(25)])
    group = group_name()
    call = await subscribe(conn, [topic.name], group=group, batch_size=10)
    sizes = []
    events: list[event_pb2.EventWrapper] = []
    while len(events) < 25:
        reply = await asyncio.wait_for(call.read(), 20)
        assert reply.WhichOneof("embed") == "events"
        sizes.append(len(reply.events.events))
        events.extend(reply.events.events)
    assert max(sizes) <= 10
    assert [e.offset for e in events] == list(range(1, 26))
    await call.write(
        ensign_pb2.SubscribeRequest(acks=ensign_pb2.AckBatch(ids=[e.id for e in events]))
    )
    await publish_all(conn, topic.id, [make_event(b"after")])
    (after,) = await read_events(call, 1)
    assert data_of([after]) == [b"after"]
    call.cancel()
    resumed = await subscribe(conn, [topic.name], group=group, batch_size=10)
    (again,) = await read_events(resumed, 1)
    assert data_of([again]) == [b"after"], "acked batch events were delivered again"
    resumed.cancel()


async def test_group_position_survives_a_restart(fresh_server: EmbeddedServer) -> None:
    c = await connect(fresh_server)
    topic = await c.create_topic("positions")
    await publish_all(c, topic.id, [make_event(b"%d" % i) for i in range(4)])
    call = await subscribe(c, [topic.name], group="durable")
    events = await read_events(call, 4)
    for event in events[:2]:
        await ack(call, event)
    await finish(call)
    await c.channel.close()
    assert fresh_server.stop() == 0
    fresh_server.start()
    c = await connect(fresh_server)
    try:
        call = await subscribe(c, [topic.name], group="durable")
        assert data_of(await read_events(call, 2)) == [b"2", b"3"]
        call.cancel()
    finally:
        await c.channel.close()


async def test_streams_of_one_group_share_the_events(conn: Conn) -> None:
    topic = await conn.create_topic()
    group = group_name()
    first = await subscribe(conn, [topic.name], group=group, window=3)
    second = await subscribe(conn, [topic.name], group=group, window=3)
    await publish_all(conn, topic.id, [make_event(b"%d" % i) for i in range(6)])
    got = await read_events(first, 3) + await read_events(second, 3)
    assert sorted(data_of(got)) == [b"%d" % i for i in range(6)]
    first.cancel()
    second.cancel()


async def test_group_by_id_is_distinct_from_group_by_name(conn: Conn) -> None:
    topic = await conn.create_topic()
    await publish_all(conn, topic.id, [make_event(b"only")])
    by_name = await subscribe(conn, [topic.name], group="shared-name")
    (event,) = await read_events(by_name, 1)
    await ack(by_name, event)
    await finish(by_name)
    call = conn.subscribe_stream()
    await call.write(
        ensign_pb2.SubscribeRequest(
            subscription=ensign_pb2.Subscription(
                topics=[topic.name], group=groups_pb2.ConsumerGroup(id=ids.new_ulid())
            )
        )
    )
    assert (await call.read()).WhichOneof("embed") == "ready"
    assert data_of(await read_events(call, 1)) == [b"only"]
    call.cancel()


async def test_group_with_a_query_gets_only_matching_events_and_moves_past_the_rest(
    conn: Conn,
) -> None:
    topic = await conn.create_topic()
    await publish_all(
        conn,
        topic.id,
        [
            make_event(b"skip", metadata={"kind": "b"}),
            make_event(b"take", metadata={"kind": "a"}),
        ],
    )
    group = group_name()
    query = f"SELECT * FROM {topic.name} WHERE kind = 'a'"
    call = await subscribe(conn, [topic.name], group=group, query=query)
    (event,) = await read_events(call, 1)
    assert data_of([event]) == [b"take"]
    await ack(call, event)
    await finish(call)
    await publish_all(conn, topic.id, [make_event(b"later", metadata={"kind": "a"})])
    again = await subscribe(conn, [topic.name], group=group, query=query)
    assert data_of(await read_events(again, 1)) == [b"later"]
    again.cancel()


async def test_new_group_from_latest_skips_stored_events_and_gets_new_ones(conn: Conn) -> None:
    topic = await conn.create_topic()
    await publish_all(conn, topic.id, [make_event(b"old-%d" % i) for i in range(3)])
    call = await subscribe(conn, [topic.name], group=group_name(), latest=True)
    await publish_all(conn, topic.id, [make_event(b"new-0"), make_event(b"new-1")])
    # Delivery is in offset order, so a stored event would have come first.
    events = await read_events(call, 2)
    assert data_of(events) == [b"new-0", b"new-1"]
    assert [e.offset for e in events] == [4, 5]
    call.cancel()
    # The default is unchanged: another new group starts at the first event.
    earliest = await subscribe(conn, [topic.name], group=group_name())
    assert data_of(await read_events(earliest, 5)) == [
        b"old-0",
        b"old-1",
        b"old-2",
        b"new-0",
        b"new-1",
    ]
    earliest.cancel()


async def test_group_with_an_acked_position_ignores_latest_and_resumes(conn: Conn) -> None:
    topic = await conn.create_topic()
    await publish_all(conn, topic.id, [make_event(b"%d" % i) for i in range(4)])
    group = group_name()
    call = await subscribe(conn, [topic.name], group=group)
    events = await read_events(call, 4)
    for event in events[:2]:
        await ack(call, event)
    await finish(call)
    again = await subscribe(conn, [topic.name], group=group, latest=True)
    assert data_of(await read_events(again, 2)) == [b"2", b"3"]
    again.cancel()


async def test_a_stream_joining_a_group_that_started_earliest_ignores_latest(
    conn: Conn,
) -> None:
    # Nothing is acked yet: the group's position exists only in the server's memory.
    topic = await conn.create_topic()
    await publish_all(conn, topic.id, [make_event(b"%d" % i) for i in range(3)])
    group = group_name()
    first = await subscribe(conn, [topic.name], group=group, window=1)
    assert data_of(await read_events(first, 1)) == [b"0"]
    second = await subscribe(conn, [topic.name], group=group, latest=True)
    assert data_of(await read_events(second, 2)) == [b"1", b"2"]
    first.cancel()
    second.cancel()


async def test_a_group_reconnecting_after_latest_resumes_at_its_start_not_the_topics(
    conn: Conn,
) -> None:
    topic = await conn.create_topic()
    await publish_all(conn, topic.id, [make_event(b"old")])
    group = group_name()
    call = await subscribe(conn, [topic.name], group=group, latest=True)
    await finish(call)  # nothing delivered, nothing acked
    await publish_all(conn, topic.id, [make_event(b"while-away")])
    for latest in (False, True):
        again = await subscribe(conn, [topic.name], group=group, latest=latest)
        assert data_of(await read_events(again, 1)) == [b"while-away"]
        again.cancel()


async def test_latest_applies_per_topic_where_the_group_has_no_position(conn: Conn) -> None:
    known, fresh = await conn.create_topic(), await conn.create_topic()
    await publish_all(conn, known.id, [make_event(b"known-%d" % i) for i in range(3)])
    await publish_all(conn, fresh.id, [make_event(b"fresh-old")])
    group = group_name()
    call = await subscribe(conn, [known.name], group=group)
    (first, *_) = await read_events(call, 3)
    await ack(call, first)
    await finish(call)
    both = await subscribe(conn, [known.name, fresh.name], group=group, latest=True)
    # The known topic resumes after its acked event; the new one starts at its end.
    assert data_of(await read_events(both, 2)) == [b"known-1", b"known-2"]
    await publish_all(conn, fresh.id, [make_event(b"fresh-new")])
    (event,) = await read_events(both, 1)
    assert (data_of([event]), event.topic_id) == ([b"fresh-new"], fresh.id)
    both.cancel()


async def test_latest_skips_no_event_committed_after_ready(conn: Conn) -> None:
    # A publisher keeps committing while the group's stream opens. Every event it sends
    # after the subscriber has StreamReady must be delivered, with no gap in the offsets.
    topic = await conn.create_topic()
    busy, ready = asyncio.Event(), asyncio.Event()
    sent_after_ready: list[int] = []

    async def keep_publishing() -> int:
        stream = conn.publish_stream()
        await stream.write(open_req())
        assert (await stream.read()).WhichOneof("embed") == "ready"
        offset = 0  # one publisher, each ack awaited: the offsets are 1, 2, 3 ...
        while len(sent_after_ready) < 50:
            after = ready.is_set()
            await stream.write(event_req(wrapper(topic.id, make_event(b"%d" % offset))))
            assert (await stream.read()).WhichOneof("embed") == "ack"
            offset += 1
            if after:
                sent_after_ready.append(offset)
            if offset == 20:
                busy.set()
        stream.cancel()
        return offset

    publisher = asyncio.create_task(keep_publishing())
    await asyncio.wait_for(busy.wait(), 20)
    call = await subscribe(conn, [topic.name], group=group_name(), latest=True)
    ready.set()
    last = await asyncio.wait_for(publisher, 20)
    offsets: list[int] = []
    while not offsets or offsets[-1] < last:
        offsets += [e.offset for e in await read_events(call, 1)]
    assert offsets[0] > 20, "stored events were delivered"
    assert offsets == list(range(offsets[0], last + 1))
    assert offsets[0] <= sent_after_ready[0]
    call.cancel()


async def test_latest_position_survives_a_server_restart(fresh_server: EmbeddedServer) -> None:
    c = await connect(fresh_server)
    topic = await c.create_topic("late-group")
    await publish_all(c, topic.id, [make_event(b"old-%d" % i) for i in range(3)])
    call = await subscribe(c, [topic.name], group="late", latest=True)
    call.cancel()
    await publish_all(c, topic.id, [make_event(b"while-away")])
    await c.channel.close()
    assert fresh_server.stop() == 0
    fresh_server.start()
    c = await connect(fresh_server)
    try:
        call = await subscribe(c, [topic.name], group="late")
        assert data_of(await read_events(call, 1)) == [b"while-away"]
        call.cancel()
    finally:
        await c.channel.close()

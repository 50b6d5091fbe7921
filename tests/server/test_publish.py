"""The Publish stream over real gRPC: handshake, acks, every nack, bad input (PROTOCOL.md §3)."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from django_ensign.proto.api.v1beta1 import ensign_pb2, event_pb2, topic_pb2
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

Nack = ensign_pb2.Nack


async def open_publisher(c: Conn, topics: list[str] | None = None) -> tuple[object, object]:
    call = c.publish_stream()
    await call.write(open_req(topics or []))
    ready = await call.read()
    return call, ready


async def open_raw_publisher(c: Conn) -> Any:
    """A Publish call that sends bytes as given, past its OpenStream and StreamReady."""
    raw = c.channel.stream_stream(
        "/ensign.v1beta1.Ensign/Publish",
        request_serializer=lambda b: b,
        response_deserializer=ensign_pb2.PublisherReply.FromString,
    )
    call = raw(metadata=c.md)
    await call.write(open_req().SerializeToString())
    assert (await call.read()).WhichOneof("embed") == "ready"
    return call


async def test_ready_lists_topics_and_advertises_the_batch_extension(conn: Conn) -> None:
    topic = await conn.create_topic()
    call, ready = await open_publisher(conn)
    assert ready.WhichOneof("embed") == "ready"  # type: ignore[attr-defined]
    assert ready.ready.client_id == "tests"  # type: ignore[attr-defined]
    assert ready.ready.server_id  # type: ignore[attr-defined]
    assert ready.ready.topics[topic.name] == topic.id  # type: ignore[attr-defined]
    assert ready.ready.batch.max_events >= 100  # type: ignore[attr-defined]
    assert ready.ready.batch.max_bytes > 5_243_000  # type: ignore[attr-defined]
    call.cancel()  # type: ignore[attr-defined]


async def test_client_id_defaults_to_the_token_subject(conn: Conn) -> None:
    await conn.create_topic()
    call = conn.publish_stream()
    await call.write(open_req(client_id=""))
    ready = await call.read()
    assert ready.ready.client_id == conn.server.credentials.client_id
    call.cancel()


async def test_open_stream_topic_filter_by_name_id_or_hash(conn: Conn) -> None:
    from django_ensign.wire.topichash import topic_hash_str

    await conn.create_topic()
    topics = [await conn.create_topic() for _ in range(3)]
    refs = [
        topics[0].name,
        ids.ulid_to_str(topics[1].id).lower(),
        topic_hash_str(topics[2].name),
        "no-such-topic",
    ]
    _, ready = await open_publisher(conn, refs)
    assert set(ready.ready.topics) == {t.name for t in topics}  # type: ignore[attr-defined]


async def test_open_stream_filter_matching_nothing_fails(conn: Conn) -> None:
    await conn.create_topic()
    call = conn.publish_stream()
    await call.write(open_req(["no-such-topic"]))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call.read()
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert err.value.details() == "no topics available"


async def test_events_are_acked_in_order_with_commit_times_then_close_stream(conn: Conn) -> None:
    topic = await conn.create_topic()
    replies = await publish_all(conn, topic.id, [make_event(b"%d" % i) for i in range(10)])
    kinds = [r.WhichOneof("embed") for r in replies]
    assert kinds == ["ack"] * 10 + ["close_stream"]
    assert all(r.ack.committed.seconds > 0 for r in replies[:10])
    close = replies[-1].close_stream
    assert (close.events, close.topics, close.acks, close.nacks) == (10, 1, 10, 0)


async def test_ack_echoes_the_local_id(conn: Conn) -> None:
    topic = await conn.create_topic()
    call, _ = await open_publisher(conn)
    local = ids.new_ulid()
    await call.write(event_req(wrapper(topic.id, local_id=local)))  # type: ignore[attr-defined]
    reply = await call.read()  # type: ignore[attr-defined]
    assert reply.ack.id == local
    call.cancel()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("topic_id", "code", "error"),
    [
        (b"", Nack.TOPIC_UNKNOWN, "no topic id specified"),
        (b"short", Nack.TOPIC_UNKNOWN, "invalid topic id"),
        (ids.new_ulid(), Nack.TOPIC_UNKNOWN, "topic unknown or unhandled"),
    ],
    ids=["empty", "short", "unknown"],
)
async def test_bad_topic_ids_are_nacked_and_the_stream_keeps_working(
    conn: Conn, topic_id: bytes, code: int, error: str
) -> None:
    topic = await conn.create_topic()
    call, _ = await open_publisher(conn)
    local = ids.new_ulid()
    await call.write(event_req(wrapper(topic_id, local_id=local)))  # type: ignore[attr-defined]
    reply = await call.read()  # type: ignore[attr-defined]
    assert reply.WhichOneof("embed") == "nack"
    assert (reply.nack.id, reply.nack.code, reply.nack.error) == (local, code, error)
    await call.write(event_req(wrapper(topic.id)))  # type: ignore[attr-defined]
    assert (await call.read()).WhichOneof("embed") == "ack"  # type: ignore[attr-defined]
    call.cancel()  # type: ignore[attr-defined]


async def test_topic_outside_the_open_stream_filter_is_unknown(conn: Conn) -> None:
    allowed = await conn.create_topic()
    other = await conn.create_topic()
    call, _ = await open_publisher(conn, [allowed.name])
    await call.write(event_req(wrapper(other.id)))  # type: ignore[attr-defined]
    reply = await call.read()  # type: ignore[attr-defined]
    assert reply.nack.code == Nack.TOPIC_UNKNOWN
    assert reply.nack.error == "topic unknown or unhandled"
    call.cancel()  # type: ignore[attr-defined]


async def test_foreign_project_topic_is_unknown(fresh_server: EmbeddedServer, conn: Conn) -> None:
    foreign = await conn.create_topic()
    own = await connect(fresh_server)
    try:
        await own.create_topic()
        call, _ = await open_publisher(own)
        await call.write(event_req(wrapper(foreign.id)))  # type: ignore[attr-defined]
        reply = await call.read()  # type: ignore[attr-defined]
        assert reply.nack.code == Nack.TOPIC_UNKNOWN
        call.cancel()  # type: ignore[attr-defined]
    finally:
        await own.channel.close()


async def test_oversize_event_is_nacked_and_the_stream_keeps_working(conn: Conn) -> None:
    topic = await conn.create_topic()
    call, _ = await open_publisher(conn)
    big = make_event(b"x" * 5_243_001)
    await call.write(event_req(wrapper(topic.id, big)))  # type: ignore[attr-defined]
    reply = await call.read()  # type: ignore[attr-defined]
    assert reply.nack.code == Nack.MAX_EVENT_SIZE_EXCEEDED
    assert reply.nack.error == "maximum event size has been exceeded"
    just_fits = make_event(b"x" * 5_000_000)
    await call.write(event_req(wrapper(topic.id, just_fits)))  # type: ignore[attr-defined]
    assert (await call.read()).WhichOneof("embed") == "ack"  # type: ignore[attr-defined]
    call.cancel()  # type: ignore[attr-defined]


async def test_archived_topic_is_nacked(conn: Conn) -> None:
    topic = await conn.create_topic()
    call, _ = await open_publisher(conn)
    await conn.stub.DeleteTopic(
        topic_pb2.TopicMod(id=ids.ulid_to_str(topic.id), operation=topic_pb2.TopicMod.ARCHIVE),
        metadata=conn.md,
    )
    await call.write(event_req(wrapper(topic.id)))  # type: ignore[attr-defined]
    reply = await call.read()  # type: ignore[attr-defined]
    assert (reply.nack.code, reply.nack.error) == (Nack.TOPIC_ARCHIVED, "topic is archived")
    call.cancel()  # type: ignore[attr-defined]


async def test_first_message_must_be_open_stream(conn: Conn) -> None:
    topic = await conn.create_topic()
    call = conn.publish_stream()
    await call.write(event_req(wrapper(topic.id)))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call.read()
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert err.value.details() == (
        "an open stream message must be sent immediately after opening the stream"
    )


async def test_half_close_before_open_stream_ends_ok_with_nothing(conn: Conn) -> None:
    await conn.create_topic()
    call = conn.publish_stream()
    await call.done_writing()
    assert await call.read() is EOF
    assert await call.code() == grpc.StatusCode.OK


async def test_second_open_stream_closes_then_aborts(conn: Conn) -> None:
    topic = await conn.create_topic()
    call, _ = await open_publisher(conn)
    await call.write(event_req(wrapper(topic.id)))  # type: ignore[attr-defined]
    await call.write(open_req())  # type: ignore[attr-defined]
    assert (await call.read()).WhichOneof("embed") == "ack"  # type: ignore[attr-defined]
    close = await call.read()  # type: ignore[attr-defined]
    assert close.WhichOneof("embed") == "close_stream"
    assert close.close_stream.acks == 1
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call.read()  # type: ignore[attr-defined]
    assert err.value.code() == grpc.StatusCode.ABORTED
    assert err.value.details() == "cannot send multiple open stream messages"


async def test_empty_oneof_fails_precondition(conn: Conn) -> None:
    await conn.create_topic()
    call, _ = await open_publisher(conn)
    await call.write(ensign_pb2.PublisherRequest())  # type: ignore[attr-defined]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call.read()  # type: ignore[attr-defined]
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert err.value.details() == "unhandled publisher request message <nil>"


async def test_malformed_protobuf_bytes_end_the_call_and_the_server_keeps_serving(
    conn: Conn,
) -> None:
    topic = await conn.create_topic()
    call = await open_raw_publisher(conn)
    await call.write(b"\x0a\xff\xff\xff\xff\x0f garbage")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call.read()
    assert err.value.code() == grpc.StatusCode.ABORTED
    assert err.value.details() == "could not recv event from client"
    replies = await publish_all(conn, topic.id, [make_event()])
    assert replies[0].WhichOneof("embed") == "ack"


async def test_project_without_topics_fails_before_reading(fresh_server: EmbeddedServer) -> None:
    c = await connect(fresh_server)
    try:
        call = c.publish_stream()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call.read()
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert err.value.details() == "no topics available"
    finally:
        await c.channel.close()


async def test_server_overwrites_publisher_and_assigns_offsets(conn: Conn) -> None:
    from django_ensign.proto.api.v1beta1 import query_pb2

    topic = await conn.create_topic()
    call, _ = await open_publisher(conn)
    w = wrapper(topic.id)
    w.publisher.CopyFrom(event_pb2.Publisher(publisher_id="forged", ipaddr="1.2.3.4"))
    w.offset = 99
    await call.write(event_req(w))  # type: ignore[attr-defined]
    await call.write(event_req(wrapper(topic.id)))  # type: ignore[attr-defined]
    for _ in range(2):
        assert (await call.read()).WhichOneof("embed") == "ack"  # type: ignore[attr-defined]
    call.cancel()  # type: ignore[attr-defined]
    stored = [
        e
        async for e in conn.stub.EnSQL(
            query_pb2.Query(query=f"SELECT * FROM {topic.name}"), metadata=conn.md
        )
    ]
    assert [e.offset for e in stored] == [1, 2]
    first = stored[0]
    assert first.publisher.publisher_id == conn.server.credentials.client_id
    assert first.publisher.ipaddr == "127.0.0.1"
    assert first.publisher.client_id == "tests"
    assert first.local_id == b""
    assert len(first.id) == 10
    assert first.committed.seconds > 0


async def test_batch_extension_acks_and_nacks_every_event(conn: Conn) -> None:
    topic = await conn.create_topic()
    call, _ = await open_publisher(conn)
    good = [wrapper(topic.id) for _ in range(50)]
    bad = wrapper(b"", local_id=ids.new_ulid())
    batch = ensign_pb2.EventBatch(events=[*good[:25], bad, *good[25:]])
    await call.write(ensign_pb2.PublisherRequest(events=batch))  # type: ignore[attr-defined]
    acked: list[bytes] = []
    nacked: list[bytes] = []
    while len(acked) + len(nacked) < 51:
        reply = await call.read()  # type: ignore[attr-defined]
        assert reply.WhichOneof("embed") == "replies"
        acked += [a.id for a in reply.replies.acks]
        nacked += [n.id for n in reply.replies.nacks]
        assert all(a.committed.seconds > 0 for a in reply.replies.acks)
    assert acked == [w.local_id for w in good]
    assert nacked == [bad.local_id]
    await call.done_writing()  # type: ignore[attr-defined]
    close = await call.read()  # type: ignore[attr-defined]
    assert (close.close_stream.events, close.close_stream.acks) == (51, 50)


async def test_batched_events_are_stored_with_the_servers_fields_however_they_are_framed(
    conn: Conn,
) -> None:
    from django_ensign.proto.api.v1beta1 import query_pb2

    topic = await conn.create_topic()
    call = await open_raw_publisher(conn)

    def batch(wrappers: list[event_pb2.EventWrapper]) -> bytes:
        events = ensign_pb2.EventBatch(events=wrappers)
        return ensign_pb2.PublisherRequest(events=events).SerializeToString()

    plain = [wrapper(topic.id, make_event(b'{"n": %d}' % n)) for n in range(3)]
    forged = [wrapper(topic.id, make_event(b'{"n": %d}' % n)) for n in range(3, 5)]
    forged[1].publisher.CopyFrom(event_pb2.Publisher(publisher_id="forged"))
    forged[1].offset = 99
    # The events field twice in one request: protobuf merges the two batches into one.
    twice = [wrapper(topic.id, make_event(b'{"n": %d}' % n)) for n in range(5, 7)]
    await call.write(batch(plain))
    await call.write(batch(forged))
    await call.write(batch(twice[:1]) + batch(twice[1:]))
    acked: list[bytes] = []
    while len(acked) < 7:
        reply = await call.read()
        assert not reply.replies.nacks
        acked += [a.id for a in reply.replies.acks]
    assert acked == [w.local_id for w in plain + forged + twice]
    await call.done_writing()
    stored = [
        e
        async for e in conn.stub.EnSQL(
            query_pb2.Query(query=f"SELECT * FROM {topic.name}"), metadata=conn.md
        )
    ]
    assert [e.offset for e in stored] == [1, 2, 3, 4, 5, 6, 7]
    assert [event_pb2.Event.FromString(e.event).data for e in stored] == [
        b'{"n": %d}' % n for n in range(7)
    ]
    for e in stored:
        assert e.topic_id == topic.id
        assert e.publisher.publisher_id == conn.server.credentials.client_id
        assert e.publisher.client_id == "tests"
        assert e.local_id == b""
        assert len(e.id) == 10
        assert e.committed.seconds > 0
    assert len({e.id for e in stored}) == 7

"""Topic RPCs over real gRPC: create, retrieve, list, names, exists, delete, policy (§5)."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from django_ensign.proto.api.v1beta1 import ensign_pb2, query_pb2, topic_pb2
from django_ensign.wire import ids
from django_ensign.wire.topichash import topic_hash_str
from tests.server.conftest import Conn, connect, make_event, publish_all
from tests.support.server import EmbeddedServer

Code = grpc.StatusCode


async def expect_error(coro: object, code: grpc.StatusCode, details: str | None = None) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await coro  # type: ignore[misc]
    assert err.value.code() == code, err.value.details()
    if details is not None:
        assert err.value.details() == details


async def test_create_topic_returns_a_ready_topic(conn: Conn) -> None:
    topic = await conn.create_topic("weather.readings-v1_a")
    assert len(topic.id) == 16
    assert len(topic.project_id) == 16
    assert topic.name == "weather.readings-v1_a"
    assert topic.status == topic_pb2.READY
    assert topic.deduplication.strategy == topic_pb2.Deduplication.NONE
    assert topic.deduplication.offset == topic_pb2.Deduplication.OFFSET_EARLIEST
    assert topic.created.seconds > 0
    assert topic.modified.seconds > 0


@pytest.mark.parametrize(
    ("name", "details"),
    [
        ("", "missing name field"),
        ("a" * 513, "topic name is too long"),
        ("1starts-with-digit", "topic name is invalid"),
        ("has space", "topic name is invalid"),
        ("émoji", "topic name is invalid"),
        ("trailing-newline\n", "topic name is invalid"),
    ],
)
async def test_bad_topic_names_are_invalid(conn: Conn, name: str, details: str) -> None:
    await expect_error(
        conn.stub.CreateTopic(topic_pb2.Topic(name=name), metadata=conn.md),
        Code.INVALID_ARGUMENT,
        details,
    )


async def test_duplicate_names_already_exist_but_case_matters(conn: Conn) -> None:
    topic = await conn.create_topic()
    await expect_error(
        conn.create_topic(topic.name), Code.ALREADY_EXISTS, "topic name already exists in project"
    )
    other = await conn.create_topic(topic.name.upper())
    assert other.id != topic.id


async def test_concurrent_creates_of_one_name_make_one_topic(conn: Conn) -> None:
    name = "race-" + ids.ulid_to_str(ids.new_ulid())
    results = await asyncio.gather(
        *(conn.create_topic(name) for _ in range(5)), return_exceptions=True
    )
    created = [r for r in results if isinstance(r, topic_pb2.Topic)]
    assert len(created) == 1
    failed = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(failed) == 4
    assert all(r.code() == Code.ALREADY_EXISTS for r in failed)


async def test_create_topic_in_another_project_is_denied(conn: Conn) -> None:
    await expect_error(
        conn.stub.CreateTopic(
            topic_pb2.Topic(name="x", project_id=ids.new_ulid()), metadata=conn.md
        ),
        Code.PERMISSION_DENIED,
    )


async def test_retrieve_topic(conn: Conn) -> None:
    topic = await conn.create_topic()
    got = await conn.stub.RetrieveTopic(topic_pb2.Topic(id=topic.id), metadata=conn.md)
    assert (got.id, got.name) == (topic.id, topic.name)
    await expect_error(
        conn.stub.RetrieveTopic(topic_pb2.Topic(), metadata=conn.md),
        Code.INVALID_ARGUMENT,
        "missing topic id field",
    )
    await expect_error(
        conn.stub.RetrieveTopic(topic_pb2.Topic(id=b"abc"), metadata=conn.md),
        Code.INVALID_ARGUMENT,
        "invalid topic id field",
    )
    await expect_error(
        conn.stub.RetrieveTopic(topic_pb2.Topic(id=ids.new_ulid()), metadata=conn.md),
        Code.NOT_FOUND,
        "topic not found",
    )


async def test_retrieve_topic_of_another_project_is_not_found(
    conn: Conn, fresh_server: EmbeddedServer
) -> None:
    other = await connect(fresh_server)
    try:
        foreign = await other.create_topic()
        await expect_error(
            conn.stub.RetrieveTopic(topic_pb2.Topic(id=foreign.id), metadata=conn.md),
            Code.NOT_FOUND,
        )
    finally:
        await other.channel.close()


async def test_topic_offset_counts_events(conn: Conn) -> None:
    topic = await conn.create_topic()
    await publish_all(conn, topic.id, [make_event() for _ in range(3)])
    got = await conn.stub.RetrieveTopic(topic_pb2.Topic(id=topic.id), metadata=conn.md)
    assert got.offset == 3


async def test_list_topics_pages_through_everything(fresh_server: EmbeddedServer) -> None:
    c = await connect(fresh_server)
    try:
        made = [await c.create_topic(f"topic{i:02d}") for i in range(7)]
        seen: list[str] = []
        token = ""
        pages = 0
        while True:
            page = await c.stub.ListTopics(
                ensign_pb2.PageInfo(page_size=3, next_page_token=token), metadata=c.md
            )
            seen += [t.name for t in page.topics]
            pages += 1
            token = page.next_page_token
            if not token:
                break
        assert pages == 3
        assert sorted(seen) == sorted(t.name for t in made)
        everything = await c.stub.ListTopics(ensign_pb2.PageInfo(), metadata=c.md)
        assert len(everything.topics) == 7
        assert everything.next_page_token == ""
    finally:
        await c.channel.close()


@pytest.mark.parametrize("token", ["garbage", "eyJhZnRlciI6ICJ6eiJ9", "!!!"])
async def test_bad_page_tokens_are_invalid(conn: Conn, token: str) -> None:
    await conn.create_topic()
    for rpc in (conn.stub.ListTopics, conn.stub.TopicNames):
        await expect_error(
            rpc(ensign_pb2.PageInfo(next_page_token=token), metadata=conn.md),
            Code.INVALID_ARGUMENT,
            "invalid page token",
        )


async def test_topic_names_carry_ids_as_strings_and_the_name_hash(conn: Conn) -> None:
    topic = await conn.create_topic()
    names: list[topic_pb2.TopicName] = []
    token = ""
    while True:
        page = await conn.stub.TopicNames(
            ensign_pb2.PageInfo(next_page_token=token), metadata=conn.md
        )
        names += list(page.topic_names)
        token = page.next_page_token
        if not token:
            break
    mine = [n for n in names if n.topic_id == ids.ulid_to_str(topic.id)]
    assert len(mine) == 1
    assert mine[0].project_id == ids.ulid_to_str(topic.project_id)
    assert mine[0].name == topic_hash_str(topic.name)
    assert len(mine[0].name) == 22


async def test_topic_exists(conn: Conn) -> None:
    topic = await conn.create_topic()
    tid = ids.ulid_to_str(topic.id)
    by_name = await conn.stub.TopicExists(topic_pb2.TopicName(name=topic.name), metadata=conn.md)
    assert by_name.exists
    assert by_name.query == f'name="{topic.name}"'
    by_id = await conn.stub.TopicExists(topic_pb2.TopicName(topic_id=tid.lower()), metadata=conn.md)
    assert by_id.exists
    both = await conn.stub.TopicExists(
        topic_pb2.TopicName(topic_id=tid, name="nope"), metadata=conn.md
    )
    assert not both.exists
    missing = await conn.stub.TopicExists(
        topic_pb2.TopicName(name="nope-never-made"), metadata=conn.md
    )
    assert not missing.exists
    await expect_error(
        conn.stub.TopicExists(topic_pb2.TopicName(), metadata=conn.md),
        Code.INVALID_ARGUMENT,
        "must specify either or both topic name and id",
    )


async def test_archive_makes_the_topic_readonly(conn: Conn) -> None:
    topic = await conn.create_topic()
    status = await conn.stub.DeleteTopic(
        topic_pb2.TopicMod(id=ids.ulid_to_str(topic.id), operation=topic_pb2.TopicMod.ARCHIVE),
        metadata=conn.md,
    )
    assert status.state == topic_pb2.READONLY
    assert status.id == ids.ulid_to_str(topic.id)
    got = await conn.stub.RetrieveTopic(topic_pb2.Topic(id=topic.id), metadata=conn.md)
    assert got.readonly
    assert got.status == topic_pb2.READONLY


async def test_destroy_removes_the_topic_and_frees_the_name(conn: Conn) -> None:
    topic = await conn.create_topic()
    await publish_all(conn, topic.id, [make_event() for _ in range(3)])
    status = await conn.stub.DeleteTopic(
        topic_pb2.TopicMod(id=ids.ulid_to_str(topic.id), operation=topic_pb2.TopicMod.DESTROY),
        metadata=conn.md,
    )
    assert status.state == topic_pb2.DELETING
    for _ in range(200):
        exists = await conn.stub.TopicExists(topic_pb2.TopicName(name=topic.name), metadata=conn.md)
        if not exists.exists:
            break
        await asyncio.sleep(0.02)
    assert not exists.exists
    again = await conn.create_topic(topic.name)
    assert again.id != topic.id
    events = [
        e
        async for e in conn.stub.EnSQL(
            query_pb2.Query(query=f"SELECT * FROM {topic.name}"), metadata=conn.md
        )
    ]
    assert events == []


async def test_delete_topic_errors(conn: Conn) -> None:
    topic = await conn.create_topic()
    tid = ids.ulid_to_str(topic.id)
    await expect_error(
        conn.stub.DeleteTopic(topic_pb2.TopicMod(id=tid), metadata=conn.md),
        Code.INVALID_ARGUMENT,
        "invalid operation field",
    )
    await expect_error(
        conn.stub.DeleteTopic(
            topic_pb2.TopicMod(operation=topic_pb2.TopicMod.ARCHIVE), metadata=conn.md
        ),
        Code.INVALID_ARGUMENT,
        "missing topic id field",
    )
    await expect_error(
        conn.stub.DeleteTopic(
            topic_pb2.TopicMod(id="not-a-ulid", operation=topic_pb2.TopicMod.ARCHIVE),
            metadata=conn.md,
        ),
        Code.INVALID_ARGUMENT,
        "invalid topic id field",
    )
    await expect_error(
        conn.stub.DeleteTopic(
            topic_pb2.TopicMod(
                id=ids.ulid_to_str(ids.new_ulid()), operation=topic_pb2.TopicMod.ARCHIVE
            ),
            metadata=conn.md,
        ),
        Code.NOT_FOUND,
        "topic not found",
    )


async def test_strict_deduplication_marks_duplicates_online(conn: Conn) -> None:
    topic = await conn.create_topic()
    status = await conn.stub.SetTopicPolicy(
        topic_pb2.TopicPolicy(
            id=ids.ulid_to_str(topic.id),
            deduplication_policy=topic_pb2.Deduplication(strategy=topic_pb2.Deduplication.STRICT),
        ),
        metadata=conn.md,
    )
    assert status.state == topic_pb2.READY
    same = make_event(b"same", metadata={"k": "v"})
    other = make_event(b"same", metadata={"k": "other"})
    replies = await publish_all(conn, topic.id, [same, same, other])
    assert [r.WhichOneof("embed") for r in replies] == ["ack", "ack", "ack", "close_stream"]
    stored = [
        e
        async for e in conn.stub.EnSQL(
            query_pb2.Query(query=f"SELECT * FROM {topic.name}", include_duplicates=True),
            metadata=conn.md,
        )
    ]
    assert [e.is_duplicate for e in stored] == [False, True, False]
    assert stored[1].duplicate_id == stored[0].id
    deduped = [
        e
        async for e in conn.stub.EnSQL(
            query_pb2.Query(query=f"SELECT * FROM {topic.name}"), metadata=conn.md
        )
    ]
    assert len(deduped) == 2
    got = await conn.stub.RetrieveTopic(topic_pb2.Topic(id=topic.id), metadata=conn.md)
    assert got.deduplication.strategy == topic_pb2.Deduplication.STRICT


async def test_datagram_deduplication_compares_data_only(conn: Conn) -> None:
    topic = await conn.create_topic()
    await conn.stub.SetTopicPolicy(
        topic_pb2.TopicPolicy(
            id=ids.ulid_to_str(topic.id),
            deduplication_policy=topic_pb2.Deduplication(strategy=topic_pb2.Deduplication.DATAGRAM),
        ),
        metadata=conn.md,
    )
    await publish_all(
        conn,
        topic.id,
        [make_event(b"d", metadata={"a": "1"}), make_event(b"d", metadata={"a": "2"})],
    )
    stored = [
        e
        async for e in conn.stub.EnSQL(
            query_pb2.Query(query=f"SELECT * FROM {topic.name}", include_duplicates=True),
            metadata=conn.md,
        )
    ]
    assert [e.is_duplicate for e in stored] == [False, True]


async def test_set_topic_policy_errors(conn: Conn) -> None:
    topic = await conn.create_topic()
    tid = ids.ulid_to_str(topic.id)
    await expect_error(
        conn.stub.SetTopicPolicy(
            topic_pb2.TopicPolicy(id=tid, sharding_strategy=topic_pb2.CONSISTENT_KEY_HASH),
            metadata=conn.md,
        ),
        Code.UNIMPLEMENTED,
    )
    await expect_error(
        conn.stub.SetTopicPolicy(topic_pb2.TopicPolicy(id=""), metadata=conn.md),
        Code.INVALID_ARGUMENT,
        "missing topic id field",
    )
    await expect_error(
        conn.stub.SetTopicPolicy(
            topic_pb2.TopicPolicy(id=ids.ulid_to_str(ids.new_ulid())), metadata=conn.md
        ),
        Code.NOT_FOUND,
    )


@pytest.mark.parametrize(
    ("method", "reply"),
    [
        ("CreateTopic", topic_pb2.Topic),
        ("ListTopics", topic_pb2.TopicsPage),
        ("Status", ensign_pb2.ServiceState),
        ("EnSQL", query_pb2.Query),
    ],
)
async def test_undecodable_request_bytes_are_internal_and_the_server_keeps_serving(
    conn: Conn, method: str, reply: Any
) -> None:
    path = f"/ensign.v1beta1.Ensign/{method}"
    kind = conn.channel.unary_stream if method == "EnSQL" else conn.channel.unary_unary
    call = kind(path, request_serializer=lambda b: b, response_deserializer=reply.FromString)

    async def send() -> None:
        result = call(b"\x0a\xff\xff\xff\xff\x0f", metadata=conn.md)
        await (result.read() if method == "EnSQL" else result)

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await send()
    assert (err.value.code(), err.value.details()) == (
        Code.INTERNAL,
        "grpc: error unmarshalling request",
    )
    assert (await conn.create_topic()).status == topic_pb2.READY

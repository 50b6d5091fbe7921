"""Info: exact per-project and per-topic counts (PROTOCOL.md §5)."""

from __future__ import annotations

import grpc
import pytest

from django_ensign.proto.api.v1beta1 import ensign_pb2, topic_pb2
from django_ensign.wire import ids
from tests.server.conftest import connect, make_event, publish_all
from tests.support.server import EmbeddedServer


async def test_info_counts_are_exact(fresh_server: EmbeddedServer) -> None:
    c = await connect(fresh_server)
    try:
        a = await c.create_topic("a")
        b = await c.create_topic("b")
        await c.create_topic("empty")
        await publish_all(
            c,
            a.id,
            [make_event(b"12345", type_name="X") for _ in range(3)]
            + [make_event(b"1", type_name="Y", mimetype=1)],
        )
        await publish_all(c, b.id, [make_event(b"xy", type_name="X")])
        await c.stub.DeleteTopic(
            topic_pb2.TopicMod(id=ids.ulid_to_str(b.id), operation=topic_pb2.TopicMod.ARCHIVE),
            metadata=c.md,
        )
        info = await c.stub.Info(ensign_pb2.InfoRequest(), metadata=c.md)
        assert info.project_id == a.project_id
        assert (info.num_topics, info.num_readonly_topics, info.events) == (3, 1, 5)
        assert info.duplicates == 0
        per_topic = {t.topic_id: t for t in info.topics}
        assert per_topic[a.id].events == 4
        assert per_topic[b.id].events == 1
        types = {(t.type.name, t.mimetype): t.events for t in per_topic[a.id].types}
        assert types == {("X", 50): 3, ("Y", 1): 1}
        assert per_topic[a.id].data_size_bytes > 0
        assert info.data_size_bytes == sum(t.data_size_bytes for t in info.topics)
        assert len(per_topic[a.id].event_offset_id) == 10
        only_a = await c.stub.Info(ensign_pb2.InfoRequest(topics=[a.id]), metadata=c.md)
        assert [t.topic_id for t in only_a.topics] == [a.id]
        assert only_a.events == 4
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await c.stub.Info(ensign_pb2.InfoRequest(topics=[b"short"]), metadata=c.md)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        await c.channel.close()

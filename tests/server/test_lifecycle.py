"""Process lifecycle: first start, clean shutdown, kill -9 durability, restart (issue 2)."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import threading
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from django_ensign.proto.api.v1beta1 import ensign_pb2, event_pb2, query_pb2, topic_pb2
from django_ensign.server.app import serve
from tests.server.conftest import (
    Conn,
    connect,
    event_req,
    login,
    make_event,
    open_req,
    publish_all,
    wrapper,
)
from tests.support.server import EmbeddedServer, free_port


async def stored_data(c: Conn, topic: str) -> list[bytes]:
    events = [
        e
        async for e in c.stub.EnSQL(query_pb2.Query(query=f"SELECT * FROM {topic}"), metadata=c.md)
    ]
    return [event_pb2.Event.FromString(e.event).data for e in events]


def test_first_start_writes_credentials_for_a_full_key(fresh_server: EmbeddedServer) -> None:
    data = json.loads(fresh_server.credentials_path.read_text())
    assert set(data) == {"ClientID", "ClientSecret"}
    assert (fresh_server.credentials_path.stat().st_mode & 0o777) == 0o600
    claims = login(fresh_server)
    import jwt

    perms = jwt.decode(claims["access_token"], options={"verify_signature": False})["permissions"]
    assert set(perms) == {
        "publisher",
        "subscriber",
        "topics:create",
        "topics:edit",
        "topics:destroy",
        "topics:read",
        "metrics:read",
    }


async def test_sigterm_exits_zero_and_restart_keeps_topics_keys_and_offsets(
    fresh_server: EmbeddedServer,
) -> None:
    c = await connect(fresh_server)
    topic = await c.create_topic("kept")
    await publish_all(c, topic.id, [make_event(b"a"), make_event(b"b")])
    await c.channel.close()
    creds_before = fresh_server.credentials_path.read_text()
    assert fresh_server.stop() == 0
    fresh_server.start()
    assert fresh_server.credentials_path.read_text() == creds_before
    c = await connect(fresh_server)
    try:
        got = await c.stub.RetrieveTopic(topic_pb2.Topic(id=topic.id), metadata=c.md)
        assert got.name == "kept"
        await publish_all(c, topic.id, [make_event(b"c")])
        events = [
            e
            async for e in c.stub.EnSQL(query_pb2.Query(query="SELECT * FROM kept"), metadata=c.md)
        ]
        assert [e.offset for e in events] == [1, 2, 3]
        assert [e.committed.ToNanoseconds() for e in events] == sorted(
            e.committed.ToNanoseconds() for e in events
        )
    finally:
        await c.channel.close()


async def test_kill_9_after_acks_loses_nothing_acked(fresh_server: EmbeddedServer) -> None:
    c = await connect(fresh_server)
    topic = await c.create_topic("durable")
    acked: set[bytes] = set()

    async def publisher(worker: int) -> None:
        call = c.publish_stream()
        await call.write(open_req())
        await call.read()
        by_local: dict[bytes, bytes] = {}
        for i in range(100):
            data = b"%d-%d" % (worker, i)
            w = wrapper(topic.id, make_event(data))
            by_local[w.local_id] = data
            await call.write(event_req(w))
        for _ in range(100):
            reply = await call.read()
            assert reply.WhichOneof("embed") == "ack"
            acked.add(by_local[reply.ack.id])
        call.cancel()

    await asyncio.gather(*(publisher(n) for n in range(4)))
    await c.channel.close()
    fresh_server.kill()
    fresh_server.start()
    c = await connect(fresh_server)
    try:
        assert len(acked) == 400
        assert acked <= set(await stored_data(c, "durable"))
    finally:
        await c.channel.close()


async def test_sigterm_sends_in_flight_acks_and_ends_open_streams(
    fresh_server: EmbeddedServer,
) -> None:
    c = await connect(fresh_server)
    topic = await c.create_topic("inflight")
    subscriber = c.subscribe_stream()
    await subscriber.write(
        ensign_pb2.SubscribeRequest(subscription=ensign_pb2.Subscription(topics=["inflight"]))
    )
    await subscriber.read()
    call = c.publish_stream()
    await call.write(open_req())
    await call.read()
    sent: dict[bytes, bytes] = {}
    for i in range(200):
        w = wrapper(topic.id, make_event(b"%d" % i))
        sent[w.local_id] = b"%d" % i
        await call.write(event_req(w))
    process = fresh_server.process
    assert process is not None
    process.send_signal(signal.SIGTERM)
    acked: set[bytes] = set()

    async def read_acks() -> None:
        while True:
            reply = await call.read()
            if reply.WhichOneof("embed") == "ack":
                acked.add(sent[reply.ack.id])

    async def read_events() -> None:
        while True:
            await subscriber.read()

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await read_acks()
    assert (err.value.code(), err.value.details()) == (
        grpc.StatusCode.UNAVAILABLE,
        "server is shutting down",
    )
    with pytest.raises(grpc.aio.AioRpcError):
        await read_events()
    await c.channel.close()
    assert await asyncio.to_thread(process.wait, 30) == 0
    fresh_server.start()
    c = await connect(fresh_server)
    try:
        assert acked <= set(await stored_data(c, "inflight"))
    finally:
        await c.channel.close()


async def test_health_service_and_status(ensign_server: EmbeddedServer) -> None:
    channel: Any = grpc.aio.insecure_channel(ensign_server.endpoint)
    try:
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reply = await health.Check(health_pb2.HealthCheckRequest(service="ensign.v1beta1.Ensign"))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        c = await connect(ensign_server, token="unused")
        state = await c.stub.Status(ensign_pb2.HealthCheck(attempts=1))
        assert state.status == ensign_pb2.ServiceState.HEALTHY
        assert state.version
        assert state.uptime.ToNanoseconds() > 0
        assert state.not_after.ToNanoseconds() > state.not_before.ToNanoseconds() > 0
        await c.channel.close()
    finally:
        await channel.close()


@pytest.mark.parametrize("taken", ["grpc", "auth"])
async def test_a_taken_port_fails_start_and_closes_the_database(tmp_path: Path, taken: str) -> None:
    writers_before = _writer_threads()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        grpc_port, auth_port = (busy, free_port()) if taken == "grpc" else (free_port(), busy)
        with pytest.raises(OSError, match=f"could not listen on 127.0.0.1:{busy}"):
            await serve(tmp_path, "127.0.0.1", grpc_port, auth_port, asyncio.Event())
    # The failed start closed its storage: no writer thread is left behind.
    assert _writer_threads() == writers_before


def _writer_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "ensign-writer"}

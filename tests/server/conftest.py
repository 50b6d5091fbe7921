"""Helpers for talking to the embedded server with the generated stubs (not the SDK)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
import pytest

from django_ensign.proto.api.v1beta1 import (
    ensign_pb2,
    ensign_pb2_grpc,
    event_pb2,
    topic_pb2,
)
from django_ensign.wire import ids
from tests.support.server import EmbeddedServer

EOF: Any = grpc.aio.EOF  # type: ignore[attr-defined]

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 32 * 1024 * 1024),
    ("grpc.max_send_message_length", 32 * 1024 * 1024),
]


def http_json(
    url: str, body: dict[str, Any] | None = None, content_type: str = "application/json"
) -> tuple[int, dict[str, Any]]:
    """POST (with a body) or GET ``url``; returns (status, parsed JSON)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST" if body is not None else "GET")
    if body is not None:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def login(
    server: EmbeddedServer, client_id: str | None = None, secret: str | None = None
) -> dict[str, Any]:
    """Tokens for the server's bootstrap key (or the given credentials)."""
    creds = server.credentials
    status, body = http_json(
        server.auth_url + "/v1/authenticate",
        {"client_id": client_id or creds.client_id, "client_secret": secret or creds.client_secret},
    )
    assert status == 200, body
    return body


@dataclass
class Conn:
    """A channel plus a stub that sends a bearer token on every call."""

    channel: Any
    stub: Any
    token: str
    server: EmbeddedServer

    @property
    def md(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)

    async def create_topic(self, name: str | None = None) -> topic_pb2.Topic:
        name = name or f"t-{uuid.uuid4().hex[:12]}"
        topic: topic_pb2.Topic = await self.stub.CreateTopic(
            topic_pb2.Topic(name=name), metadata=self.md
        )
        return topic

    def publish_stream(self) -> Any:
        return self.stub.Publish(metadata=self.md)

    def subscribe_stream(self) -> Any:
        return self.stub.Subscribe(metadata=self.md)


async def connect(server: EmbeddedServer, token: str | None = None) -> Conn:
    """An open connection to ``server`` authenticated with the bootstrap key."""
    if token is None:
        token = str((await asyncio.to_thread(login, server))["access_token"])
    channel: Any = grpc.aio.insecure_channel(server.endpoint, options=CHANNEL_OPTIONS)
    return Conn(channel, ensign_pb2_grpc.EnsignStub(channel), token, server)


@pytest.fixture
async def conn(ensign_server: EmbeddedServer) -> AsyncIterator[Conn]:
    """A connection to the shared server."""
    c = await connect(ensign_server)
    try:
        yield c
    finally:
        await c.channel.close()


def make_event(
    data: bytes = b"{}",
    *,
    mimetype: int = 50,
    type_name: str = "Thing",
    version: tuple[int, int, int] = (1, 0, 0),
    metadata: dict[str, str] | None = None,
) -> bytes:
    """A serialized Event."""
    return event_pb2.Event(
        data=data,
        mimetype=mimetype,  # type: ignore[arg-type]
        type=event_pb2.Type(
            name=type_name,
            major_version=version[0],
            minor_version=version[1],
            patch_version=version[2],
        ),
        metadata=metadata or {},
    ).SerializeToString()


def wrapper(
    topic_id: bytes, event: bytes | None = None, local_id: bytes | None = None
) -> event_pb2.EventWrapper:
    """An EventWrapper ready to publish."""
    return event_pb2.EventWrapper(
        topic_id=topic_id,
        event=event if event is not None else make_event(),
        local_id=local_id or ids.new_ulid(),
    )


def open_req(topics: Iterable[str] = (), client_id: str = "tests") -> ensign_pb2.PublisherRequest:
    return ensign_pb2.PublisherRequest(
        open_stream=ensign_pb2.OpenStream(client_id=client_id, topics=list(topics))
    )


def event_req(w: event_pb2.EventWrapper) -> ensign_pb2.PublisherRequest:
    return ensign_pb2.PublisherRequest(event=w)


async def publish_all(c: Conn, topic_id: bytes, events: list[bytes]) -> list[Any]:
    """Open a publish stream, send each event, half-close, and return every reply after ready."""
    call = c.publish_stream()
    await call.write(open_req())
    ready = await call.read()
    assert ready.WhichOneof("embed") == "ready"
    for data in events:
        await call.write(event_req(wrapper(topic_id, data)))
    await call.done_writing()
    replies = []
    while True:
        reply = await call.read()
        if reply is EOF:
            break
        replies.append(reply)
    assert await call.code() == grpc.StatusCode.OK
    return replies

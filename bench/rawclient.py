"""Talk to the embedded server with the generated stubs only: auth, topics, a publish stream."""

from __future__ import annotations

import itertools
import json
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from bench import frames, streamdrive
from django_ensign.proto.api.v1beta1 import ensign_pb2, ensign_pb2_grpc, topic_pb2
from tests.support.server import EmbeddedServer

PUBLISH = "/ensign.v1beta1.Ensign/Publish"
_servers = itertools.count(1)


def start_server(workdir: Path) -> EmbeddedServer:
    """A fresh embedded server process with its own data directory under ``workdir``."""
    return EmbeddedServer(data_dir=workdir / f"server-{next(_servers)}").start()


def authenticate(server: EmbeddedServer) -> str:
    """POST the server's own credentials to ``/v1/authenticate``; the access token."""
    creds = server.credentials
    return access_token(server.auth_url, creds.client_id, creds.client_secret)


def access_token(auth_url: str, client_id: str, client_secret: str) -> str:
    """POST an API key to ``auth_url``'s ``/v1/authenticate``; the access token."""
    body = json.dumps({"client_id": client_id, "client_secret": client_secret})
    request = urllib.request.Request(
        f"{auth_url}/v1/authenticate",
        data=body.encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        token: str = json.load(response)["access_token"]
    return token


@dataclass
class Session:
    """An authenticated channel to one server."""

    channel: Any  # grpc.aio.Channel; grpc-stubs mistype its raw-bytes calls
    token: str

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """Call metadata carrying the bearer token."""
        return (("authorization", f"Bearer {self.token}"),)

    async def create_topic(self, name: str) -> bytes:
        """Create topic ``name``; its 16-byte id."""
        stub = ensign_pb2_grpc.EnsignStub(self.channel)
        topic = await stub.CreateTopic(topic_pb2.Topic(name=name), metadata=self.metadata)
        topic_id: bytes = topic.id
        return topic_id

    async def open_publish(self, topic: str) -> tuple[Any, ensign_pb2.StreamReady]:
        """A raw-bytes Publish call past its handshake, and the server's StreamReady."""
        call = self.channel.stream_stream(PUBLISH)(metadata=self.metadata)
        opening = ensign_pb2.PublisherRequest(
            open_stream=ensign_pb2.OpenStream(client_id="bench", topics=[topic])
        )
        await call.write(opening.SerializeToString())
        first: bytes = await call.read()
        reply = ensign_pb2.PublisherReply.FromString(first)
        if reply.WhichOneof("embed") != "ready":
            raise RuntimeError(f"expected StreamReady, got {reply}")
        return call, reply.ready


def connect(server: EmbeddedServer) -> Session:
    """An insecure channel to ``server`` and a fresh access token."""
    channel = grpc.aio.insecure_channel(server.endpoint)
    return Session(channel=channel, token=authenticate(server))


async def publish_batches(session: Session, topic: str, events: int, batch: int = 1000) -> int:
    """Create ``topic`` and fill it with ``events`` events through the batch extension."""
    topic_id = await session.create_topic(topic)
    call, ready = await session.open_publish(topic)
    if not ready.HasField("batch"):
        raise RuntimeError("the server did not offer the batch extension")
    batch = min(batch, ready.batch.max_events)
    splicer = frames.Frames(topic_id, frames.event_bytes()).splicer()

    def make(index: int) -> tuple[bytes, int]:
        size = min(batch, events - index * batch)
        return splicer.batch(index * batch, size), size

    run = await streamdrive.drive(call, events, batch, 4 * batch, make, frames.count_outcomes)
    await call.done_writing()
    while await call.read() is not streamdrive.EOF:
        pass
    return run.acked

"""In-process gRPC servicers that play servers no real component imitates, and their clients."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import grpc
import grpc.aio

from django_ensign.client import Ensign
from django_ensign.proto.api.v1beta1 import ensign_pb2, ensign_pb2_grpc


@contextlib.asynccontextmanager
async def serving(servicer: ensign_pb2_grpc.EnsignServicer) -> AsyncIterator[int]:
    """Serve ``servicer`` on a free loopback port (yielded) until the block ends."""
    server = grpc.aio.server()
    ensign_pb2_grpc.add_EnsignServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield port
    finally:
        await server.stop(None)


def client_of(
    port: int, topics: dict[str, bytes], *, ack_timeout: float, max_in_flight: int = 5000
) -> Ensign:
    """A client of the servicer on ``port`` that knows ``topics`` and asks no auth service."""
    client = Ensign(
        "a" * 32,
        "b" * 64,
        endpoint=f"127.0.0.1:{port}",
        ack_timeout=ack_timeout,
        max_in_flight=max_in_flight,
    )

    async def no_auth_service() -> str:
        return "token"

    client._connection.tokens.access_token = no_auth_service  # type: ignore[method-assign]
    client.topics.update(topics)
    return client


async def opened(
    requests: AsyncIterator[ensign_pb2.PublisherRequest], topics: Mapping[str, bytes]
) -> ensign_pb2.PublisherReply:
    """Read a publish stream's ``open_stream``; the reply that readies it with ``topics``
    (and no batch extension, as Ensign's own server)."""
    await anext(requests)
    return ensign_pb2.PublisherReply(ready=ensign_pb2.StreamReady(topics=topics))


def ack_now(local_id: bytes) -> ensign_pb2.PublisherReply:
    """The Ack of the event ``local_id``, committed now."""
    ack = ensign_pb2.Ack(id=local_id)
    ack.committed.GetCurrentTime()
    return ensign_pb2.PublisherReply(ack=ack)


class AcksEvents(ensign_pb2_grpc.EnsignServicer):
    """A publish servicer with no batch extension (as Ensign's own server) that acks each
    event it reads, its local id kept in ``acked``; its first stream does what
    :meth:`first_stream` does first (subclasses)."""

    def __init__(self, topics: Mapping[str, bytes]) -> None:
        self.topics = dict(topics)
        #: Publish streams opened so far.
        self.streams = 0
        self.acked: list[bytes] = []

    async def Publish(
        self, request_iterator: AsyncIterator[ensign_pb2.PublisherRequest], context: Any
    ) -> AsyncIterator[ensign_pb2.PublisherReply]:
        self.streams += 1
        yield await opened(request_iterator, self.topics)
        if self.streams == 1:
            await self.first_stream(request_iterator, context)
        async for request in request_iterator:
            self.acked.append(request.event.local_id)
            yield ack_now(request.event.local_id)

    async def first_stream(
        self, requests: AsyncIterator[ensign_pb2.PublisherRequest], context: Any
    ) -> None:
        """What the first stream does before it acks as the others do (here, nothing)."""


class StallsItsFirstStream(AcksEvents):
    """Reads one event of its first stream, then nothing more of it, so gRPC's flow control
    holds the client's writes, until the client cancels the call."""

    def __init__(self, topics: Mapping[str, bytes]) -> None:
        super().__init__(topics)
        self.stalled = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def first_stream(
        self, requests: AsyncIterator[ensign_pb2.PublisherRequest], context: Any
    ) -> None:
        context.add_done_callback(lambda _: self.cancelled.set())
        await anext(requests)
        self.stalled.set()
        await asyncio.Event().wait()  # until the client cancels the call

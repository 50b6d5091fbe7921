"""Servers that misbehave: one breaks each publish stream at its first event, one never
answers an event.

No real component behaves like these, so minimal in-process gRPC servicers play them.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from django_ensign.client import Ensign, Event, PublishTimeout
from django_ensign.client.events import encode_event, new_local_id
from django_ensign.client.publisher import PublisherOptions
from django_ensign.proto.api.v1beta1 import ensign_pb2, ensign_pb2_grpc
from tests.support.inprocess import ack_now, client_of, opened, serving

TOPIC_ID = b"\x01" * 16


class BreaksEveryStream(ensign_pb2_grpc.EnsignServicer):
    def __init__(self) -> None:
        self.opens = 0

    async def Publish(
        self, request_iterator: AsyncIterator[ensign_pb2.PublisherRequest], context: object
    ) -> AsyncIterator[ensign_pb2.PublisherReply]:
        self.opens += 1
        yield await opened(request_iterator, {"t": TOPIC_ID})
        await anext(request_iterator)
        raise RuntimeError("broken on purpose")


async def test_events_time_out_and_reopening_backs_off() -> None:
    servicer = BreaksEveryStream()  # type: ignore[abstract]
    async with serving(servicer) as port:
        client = client_of(port, {"t": TOPIC_ID}, ack_timeout=2.0)
        options: PublisherOptions = client._options
        started = time.monotonic()
        events = [Event(b"x") for _ in range(50)]
        await client.publish("t", events)
        for event in events:
            with pytest.raises(PublishTimeout):
                await event.wait_for_ack()
        elapsed = time.monotonic() - started
        await client.close()
    # Each failed stream doubles the pause before the next open (never shorter than asked).
    allowed, slept, delay = 1, 0.0, options.backoff_initial
    while slept + delay * 2 <= elapsed + options.backoff_max:
        delay = min(delay * 2, options.backoff_max)
        slept += delay
        allowed += 1
    assert 1 <= servicer.opens <= allowed + 1


class LeavesTheFirstEventUnanswered(ensign_pb2_grpc.EnsignServicer):
    """Acks every event but the first (as Ensign drops a reply when its queue is full),
    until ``answer_first`` is set: then it answers it with the next event's ack."""

    def __init__(self) -> None:
        self.answer_first = False

    async def Publish(
        self, request_iterator: AsyncIterator[ensign_pb2.PublisherRequest], context: object
    ) -> AsyncIterator[ensign_pb2.PublisherReply]:
        yield await opened(request_iterator, {"t": TOPIC_ID})
        first: bytes | None = (await anext(request_iterator)).event.local_id
        async for request in request_iterator:
            if self.answer_first and first is not None:
                yield ack_now(first)
                first = None
            yield ack_now(request.event.local_id)


async def publish_events(client: Ensign, count: int) -> None:
    """Publish ``count`` events of 2 KiB and wait for their acks."""
    events = [Event(os.urandom(2048)) for _ in range(count)]
    await client.publish("t", *events)
    for event in events:
        await event.wait_for_ack()


async def publish_encoded_events(client: Ensign, count: int) -> None:
    """As above, encoded in one ``publish_encoded`` call (the outbox relay's way)."""
    acked = asyncio.Event()
    left = count

    def on_ack(ack: object) -> None:
        nonlocal left
        left -= 1
        if not left:
            acked.set()

    pairs = [
        (new_local_id(), encode_event(os.urandom(2048), "application/octet-stream", "B", "1.0.0"))
        for _ in range(count)
    ]
    await client.publish_encoded("t", pairs, on_ack=on_ack)
    await acked.wait()


@pytest.mark.parametrize("publish", [publish_events, publish_encoded_events])
async def test_an_unanswered_event_does_not_pin_the_events_published_after_it(
    publish: Callable[[Ensign, int], Awaitable[None]],
) -> None:
    servicer = LeavesTheFirstEventUnanswered()  # type: ignore[abstract]
    async with serving(servicer) as port:
        client = client_of(port, {"t": TOPIC_ID}, ack_timeout=60.0, max_in_flight=100)
        await client.publish("t", Event(b"never answered"))
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(50):
                await publish(client, 50)
            gc.collect()
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
            servicer.answer_first = True  # so closing need not wait out its deadline
            await client.publish("t", Event(b"last"))
            await client.close()
    # 2,500 events of 2 KiB, answered: held until the first one's deadline, they would
    # take 5 to 10 MB (data and frames); a window of 100 holds a few hundred KB at most.
    assert held < 3_000_000

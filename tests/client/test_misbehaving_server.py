"""A server that accepts publish streams and breaks each one at its first event.

No real component behaves like this, so a minimal in-process gRPC servicer plays it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from django_ensign.client import Event, PublishTimeout
from django_ensign.client.publisher import PublisherOptions
from django_ensign.proto.api.v1beta1 import ensign_pb2, ensign_pb2_grpc
from tests.support.inprocess import client_of, serving

TOPIC_ID = b"\x01" * 16


class BreaksEveryStream(ensign_pb2_grpc.EnsignServicer):
    def __init__(self) -> None:
        self.opens = 0

    async def Publish(
        self, request_iterator: AsyncIterator[ensign_pb2.PublisherRequest], context: object
    ) -> AsyncIterator[ensign_pb2.PublisherReply]:
        self.opens += 1
        await anext(request_iterator)
        yield ensign_pb2.PublisherReply(ready=ensign_pb2.StreamReady(topics={"t": TOPIC_ID}))
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

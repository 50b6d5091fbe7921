"""Send deadlines: an event still unsent when its deadline passes is never sent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from django_ensign.client import Ack, Event, Nack, SendDeadline, SendDeadlinePassed
from django_ensign.client.deadline import clock
from django_ensign.proto.api.v1beta1 import ensign_pb2
from tests.client.conftest import encoded, make_client
from tests.support.inprocess import (
    AcksEvents,
    StallsItsFirstStream,
    client_of,
    serving,
)
from tests.support.server import EmbeddedServer

TOPIC_ID = bytes(range(16))


async def past(deadline: SendDeadline) -> None:
    """Return once ``deadline`` is behind us."""
    await asyncio.sleep(max(0.0, deadline.at - clock()) + 0.01)
    assert deadline.passed()


async def stored(server: EmbeddedServer, topic: str) -> list[bytes]:
    async with make_client(server) as reader:
        return [e.data for e in await (await reader.query(f"SELECT * FROM {topic}")).fetchall()]


@pytest.mark.timeout(60)
async def test_events_unsent_at_their_deadline_are_never_sent(
    fresh_server: EmbeddedServer, topic_name: Callable[[], str], batch: bool
) -> None:
    topic = topic_name()
    client = make_client(fresh_server, batch=batch, ack_timeout=30)
    await client.create_topic(topic)
    await asyncio.to_thread(fresh_server.kill)
    deadline = SendDeadline.after(0.5)
    late = Event(b"late", "text/plain")
    late_encoded = encoded(1)
    nacks: list[Nack] = []
    await client.publish(topic, late, send_by=deadline)
    await client.publish_encoded(topic, [late_encoded], on_nack=nacks.append, send_by=deadline)
    control = Event(b"control", "text/plain")
    await client.publish(topic, control)  # no deadline: it waits for the server
    await past(deadline)
    await asyncio.to_thread(fresh_server.start)

    assert isinstance(await control.wait_for_ack(), Ack)
    with pytest.raises(SendDeadlinePassed):
        await late.wait_for_ack()
    await client.flush(timeout=10)
    assert [(n.id, type(n.cause)) for n in nacks] == [(late_encoded[0], SendDeadlinePassed)]
    await client.close()
    assert await stored(fresh_server, topic) == [b"control"]


@pytest.mark.timeout(60)
async def test_a_deadline_moved_on_in_time_lets_the_events_go(
    fresh_server: EmbeddedServer, topic_name: Callable[[], str]
) -> None:
    topic = topic_name()
    client = make_client(fresh_server, ack_timeout=30)
    await client.create_topic(topic)
    await asyncio.to_thread(fresh_server.kill)
    deadline = SendDeadline.after(0.5)
    first = SendDeadline(deadline.at)
    event = Event(b"kept", "text/plain")
    await client.publish(topic, event, send_by=deadline)
    deadline.at = clock() + 60  # as a relay that renewed its lease
    await past(first)
    await asyncio.to_thread(fresh_server.start)

    assert isinstance(await event.wait_for_ack(), Ack)
    await client.close()
    assert await stored(fresh_server, topic) == [b"kept"]


class CrashesBeforeItAcks(AcksEvents):
    """Its first stream reads ``first`` events and breaks once ``crash`` is set, none
    answered; later streams ack what they read."""

    def __init__(self, first: int) -> None:
        super().__init__({"t": TOPIC_ID})
        self.first = first
        self.received = asyncio.Event()
        self.crash = asyncio.Event()

    async def first_stream(
        self, requests: AsyncIterator[ensign_pb2.PublisherRequest], context: Any
    ) -> None:
        for _ in range(self.first):  # no batch extension here: one event per request
            await anext(requests)
        self.received.set()
        await self.crash.wait()
        raise RuntimeError("crashed before it acked")


@pytest.mark.timeout(60)
async def test_events_sent_but_unanswered_are_not_sent_again_after_their_deadline() -> None:
    servicer = CrashesBeforeItAcks(first=4)  # type: ignore[abstract]
    async with serving(servicer) as port:
        client = client_of(port, {"t": TOPIC_ID}, ack_timeout=30.0)
        deadline = SendDeadline.after(60)
        withdrawn = [encoded(n) for n in range(3)]
        nacks: list[Nack] = []
        await client.publish_encoded("t", withdrawn, on_nack=nacks.append, send_by=deadline)
        control = Event(b"control")
        await client.publish("t", control)
        await servicer.received.wait()  # all four are on the wire
        deadline.at = clock()
        servicer.crash.set()
        assert isinstance(await control.wait_for_ack(), Ack)
        await client.flush(timeout=10)
        await client.close()
    assert servicer.acked == [control.local_id]
    assert sorted(n.id for n in nacks) == sorted(local_id for local_id, _ in withdrawn)
    assert all(isinstance(n.cause, SendDeadlinePassed) for n in nacks)


@pytest.mark.timeout(60)
async def test_a_write_held_by_flow_control_is_cancelled_at_the_deadline() -> None:
    servicer = StallsItsFirstStream({"t": TOPIC_ID})  # type: ignore[abstract]
    async with serving(servicer) as port:
        client = client_of(port, {"t": TOPIC_ID}, ack_timeout=30.0)
        # Armed when a write starts: a write in progress keeps the deadline it started with.
        deadline = SendDeadline.after(3)
        # Far more than the stream's flow-control window: most of it waits in gRPC.
        events = [Event(bytes(256 * 1024)) for _ in range(64)]
        await client.publish("t", *events, send_by=deadline)
        await servicer.stalled.wait()
        await asyncio.wait_for(servicer.cancelled.wait(), 15)  # the client gave the write up
        assert deadline.passed()
        control = Event(b"control")
        await client.publish("t", control)
        assert isinstance(await control.wait_for_ack(), Ack)
        outcomes = await asyncio.gather(*(e.wait_for_ack() for e in events), return_exceptions=True)
        await client.close()
    assert servicer.acked == [control.local_id]
    assert all(isinstance(outcome, SendDeadlinePassed) for outcome in outcomes)

"""A server restart in the middle of a publish run (Events or encoded ones) loses nothing."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable

import pytest

from django_ensign.client import Ack, Event
from django_ensign.client.exceptions import StreamDown
from tests.client.conftest import encoded, make_client
from tests.support.server import EmbeddedServer


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("encoded_events", [False, True], ids=["events", "encoded"])
async def test_server_restart_mid_run_loses_no_event(
    fresh_server: EmbeddedServer, topic_name: Callable[[], str], batch: bool, encoded_events: bool
) -> None:
    topic = topic_name()
    total = 3000
    client = make_client(fresh_server, batch=batch, max_in_flight=200, ack_timeout=60)
    await client.create_topic(topic)
    acked: set[bytes] = set()
    halfway = asyncio.Event()

    def on_ack(ack: Ack) -> None:
        acked.add(ack.id)
        if len(acked) == total // 3:
            halfway.set()

    if encoded_events:
        pairs = [encoded(i) for i in range(total)]
        ids = [local_id for local_id, _ in pairs]

        async def produce() -> None:
            for start in range(0, total, 100):
                await client.publish_encoded(topic, pairs[start : start + 100], on_ack=on_ack)

    else:
        events = [Event(b"%d" % i, "text/plain", meta={"n": str(i)}) for i in range(total)]
        ids = [event.local_id for event in events]

        async def produce() -> None:
            for event in events:
                await client.publish(topic, event, on_ack=on_ack)

    # Bounded, so a stuck run fails here instead of hanging the suite.
    async with asyncio.timeout(100):
        producer = asyncio.create_task(produce())
        await halfway.wait()
        await asyncio.to_thread(fresh_server.restart)  # kill -9, then start on the same data
        await producer
        await client.flush(timeout=60)
        await client.close()

    assert acked == set(ids)
    if not encoded_events:
        assert all(isinstance(e.outcome, Ack) for e in events)
    async with make_client(fresh_server) as reader:
        stored = await (await reader.query(f"SELECT * FROM {topic}")).fetchall()
    # At-least-once: a resent event may be stored twice, none is missing.
    assert {e.meta["n"] for e in stored} == {str(i) for i in range(total)}


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_group_subscription_survives_a_server_restart(
    fresh_server: EmbeddedServer, topic_name: Callable[[], str]
) -> None:
    topic = topic_name()
    client = make_client(fresh_server)
    await client.create_topic(topic)
    seen: list[bytes] = []
    async with asyncio.timeout(100), client.subscribe(topic, consumer_group="survivors") as sub:
        await client.publish(topic, [Event(b"before-%d" % i, "text/plain") for i in range(5)])
        async for event in sub:
            seen.append(event.data)
            await event.ack()
            if len(seen) == 5:
                break
        await asyncio.to_thread(fresh_server.restart)
        later = [Event(b"after-%d" % i, "text/plain") for i in range(5)]
        await client.publish(topic, later)
        await client.flush(timeout=60)
        async for event in sub:
            seen.append(event.data)
            await event.ack()
            if all(e.data in seen for e in later):
                break
    await client.close()
    assert {b"before-%d" % i for i in range(5)} | {b"after-%d" % i for i in range(5)} == set(seen)


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_subscription_waits_out_an_auth_outage_after_its_token_expired(
    fresh_server: EmbeddedServer, topic_name: Callable[[], str]
) -> None:
    # The token runs out while the server (auth service included) is down: reopening
    # must wait for the auth service like it waits for the gRPC port.
    topic = topic_name()
    client = make_client(fresh_server)
    await client.create_topic(topic)
    async with asyncio.timeout(100), client.subscribe(topic, consumer_group="outage") as sub:
        await client.publish(topic, Event(b"before", "text/plain"))
        first = await anext(sub)
        await first.ack()
        tokens = client._connection.tokens
        assert tokens._tokens is not None
        tokens._tokens = dataclasses.replace(tokens._tokens, access_exp=time.time() - 1)
        await asyncio.to_thread(fresh_server.restart)  # kill -9, then start on the same data
        await client.publish(topic, Event(b"after", "text/plain"))
        later = []
        async for event in sub:  # "before" may come again: its ack may not have gone out
            later.append(event.data)
            await event.ack()
            if event.data == b"after":
                break
    await client.close()
    assert first.data == b"before"
    assert set(later) <= {b"before", b"after"}


@pytest.mark.timeout(60)
async def test_an_event_that_times_out_while_the_server_is_down_says_so(
    fresh_server: EmbeddedServer, topic_name: Callable[[], str]
) -> None:
    topic = topic_name()
    client = make_client(fresh_server, ack_timeout=1.0)
    await client.create_topic(topic)
    first = Event(b"1", "text/plain")
    await client.publish(topic, first)
    assert isinstance(await first.wait_for_ack(), Ack)  # a stream is open
    await asyncio.to_thread(fresh_server.kill)
    try:
        lost = Event(b"2", "text/plain")
        await client.publish(topic, lost)
        # Still a PublishTimeout to callers; the subclass tells a relay it was no event's fault.
        with pytest.raises(StreamDown, match="no publish stream to the server is open"):
            await lost.wait_for_ack()
    finally:
        await client.close()

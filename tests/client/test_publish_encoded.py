"""Publishing encoded events: outcomes by local id, resends after a restart, deadlines."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from django_ensign.client import Ack, Nack, NackCode
from django_ensign.client.events import encode_event, new_local_id
from tests.client.conftest import make_client
from tests.support.server import EmbeddedServer


def _encoded(n: int) -> tuple[bytes, bytes]:
    return new_local_id(), encode_event(b"%d" % n, "text/plain", "Count", "1.0.0", {"n": str(n)})


async def test_encoded_events_are_acked_by_their_local_ids_and_stored(
    ensign_server: EmbeddedServer, topic_name: Callable[[], str], batch: bool
) -> None:
    topic = topic_name()
    events = [_encoded(n) for n in range(300)]
    acks: list[Ack] = []
    async with make_client(ensign_server, batch=batch) as client:
        await client.publish_encoded(topic, events, on_ack=acks.append, ensure_exists=True)
        await client.flush(timeout=10)
        stored = await (await client.query(f"SELECT * FROM {topic}")).fetchall()
    assert sorted(ack.id for ack in acks) == sorted(local_id for local_id, _ in events)
    assert all(ack.committed.seconds > 0 for ack in acks)
    assert sorted(int(e.meta["n"]) for e in stored) == list(range(300))
    assert {
        (e.type_name, e.type_version, e.mimetype_name, e.data) for e in stored if e.meta["n"] == "7"
    } == {("Count", "1.0.0", "text/plain", b"7")}


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_encoded_events_sent_before_a_server_restart_are_resent(
    fresh_server: EmbeddedServer, topic_name: Callable[[], str]
) -> None:
    topic = topic_name()
    total = 3000
    client = make_client(fresh_server, max_in_flight=200, ack_timeout=60)
    await client.create_topic(topic)
    acked: set[bytes] = set()
    halfway = asyncio.Event()

    def on_ack(ack: Ack) -> None:
        acked.add(ack.id)
        if len(acked) == total // 3:
            halfway.set()

    events = [_encoded(n) for n in range(total)]

    async def produce() -> None:
        for start in range(0, total, 100):
            await client.publish_encoded(topic, events[start : start + 100], on_ack=on_ack)

    async with asyncio.timeout(100):  # a stuck run fails here instead of hanging the suite
        producer = asyncio.create_task(produce())
        await halfway.wait()
        await asyncio.to_thread(fresh_server.restart)  # kill -9, then start on the same data
        await producer
        await client.flush(timeout=60)
        await client.close()
    assert acked == {local_id for local_id, _ in events}


async def test_an_encoded_event_with_no_reply_reaches_on_nack_as_a_timeout(
    fresh_server: EmbeddedServer, topic_name: Callable[[], str]
) -> None:
    client = make_client(fresh_server, ack_timeout=1.0)
    topic_id = await client.create_topic(topic_name())
    await asyncio.to_thread(fresh_server.kill)
    stranded = _encoded(1)
    nacks: list[Nack] = []
    await client.publish_encoded(topic_id, [stranded], on_nack=nacks.append)
    await client.flush(timeout=10)
    assert [(n.id, n.code) for n in nacks] == [(stranded[0], NackCode.TIMEOUT)]
    await asyncio.wait_for(client.close(), 15)

"""One client used from several event loops, one after another and at the same time."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from django_ensign.client import Ack, Event
from tests.client.conftest import make_client
from tests.support.server import EmbeddedServer


def test_one_client_across_loops(
    ensign_server: EmbeddedServer, topic_name: Callable[[], str]
) -> None:
    topic = topic_name()
    client = make_client(ensign_server)

    async def publish_one(data: bytes) -> object:
        event = Event(data, "text/plain")
        await client.publish(topic, event, ensure_exists=True)
        return await event.wait_for_ack(timeout=10)

    # Two loops in turn (as asyncio.run in two management commands) ...
    assert isinstance(asyncio.run(publish_one(b"first")), Ack)
    assert isinstance(asyncio.run(publish_one(b"second")), Ack)

    # ... and two loops in two threads at once.
    results: list[object] = []
    threads = [
        threading.Thread(target=lambda d=d: results.append(asyncio.run(publish_one(d))))
        for d in (b"third", b"fourth")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 2
    assert all(isinstance(r, Ack) for r in results)

    async def stored() -> list[bytes]:
        cursor = await client.query(f"SELECT * FROM {topic}")
        data = [e.data for e in await cursor.fetchall()]
        await client.close()
        return data

    assert sorted(asyncio.run(stored())) == [b"first", b"fourth", b"second", b"third"]

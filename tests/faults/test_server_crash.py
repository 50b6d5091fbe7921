"""kill -9 of the server under a publishing SDK client: every ack it ever sent is on disk.

Each iteration publishes a burst, waits until a random number of its events are acked,
SIGKILLs the server and starts it again on the same data. Everything acked before the
kill must be stored after the restart; the client resends what had no outcome, so at
the end every event published is acked and stored (at least once).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import pytest

from django_ensign.client import Ack, Ensign, Event
from django_ensign.client.exceptions import Unavailable
from tests.faults.support import Ledger, sdk_client
from tests.support.server import EmbeddedServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

ITERATIONS = 8
BURST = 400
TOPIC = "crashes"
RECONNECT_GRACE = 30.0


class AckCounter:
    """The keys of acked events, and a way to wait until there are ``n`` of them."""

    def __init__(self) -> None:
        self.keys: set[str] = set()
        self._changed = asyncio.Event()

    def callback(self, key: str) -> Any:
        def on_ack(ack: Ack) -> None:
            self.keys.add(key)
            self._changed.set()

        return on_ack

    async def reach(self, n: int) -> None:
        while len(self.keys) < n:
            self._changed.clear()
            await self._changed.wait()


async def stored_keys(client: Ensign) -> Counter[str]:
    """Every stored event's key (with repeats); retries while the channel reconnects."""
    deadline = asyncio.get_running_loop().time() + RECONNECT_GRACE
    while True:
        try:
            cursor = await client.query(f"SELECT * FROM {TOPIC}")
            return Counter(event.meta["key"] for event in await cursor.fetchall())
        except Unavailable:
            # Right after a restart the channel may still be in its reconnect backoff.
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_nothing_acked_is_lost_across_kill_9s_of_the_server(
    fresh_server: EmbeddedServer, fault_rng: random.Random, ledger: Ledger
) -> None:
    client = sdk_client(fresh_server, ack_timeout=120)
    acks = AckCounter()
    published: list[Event] = []
    try:
        await client.create_topic(TOPIC)
        for iteration in range(ITERATIONS):
            start = len(published)
            for n in range(start, start + BURST):
                event = Event(str(n).encode(), "text/plain", meta={"key": str(n)})
                published.append(event)
                await client.publish(TOPIC, event, on_ack=acks.callback(str(n)))
            target = fault_rng.randint(len(acks.keys), len(published) - 1)
            await asyncio.wait_for(acks.reach(target), 60)
            before_kill = set(acks.keys)
            await asyncio.to_thread(fresh_server.kill)
            ledger.fault("kill -9 server")
            await asyncio.to_thread(fresh_server.start)
            stored = await stored_keys(client)
            missing = before_kill - set(stored)
            ledger.lost += len(missing)
            assert not missing, f"iteration {iteration}: acked, then lost: {sorted(missing)[:10]}"
            ledger.iterations += 1
        await client.flush(timeout=90)
        stored = await stored_keys(client)
    finally:
        await client.close()
    every = {str(n) for n in range(len(published))}
    ledger.events_checked += len(every)
    ledger.lost += len(every - set(stored))
    assert all(event.acked for event in published)
    assert acks.keys == every
    assert set(stored) == every
    # Resends after a crash may store an event twice (at least once); consumers dedupe.
    print(f"{sum(stored.values()) - len(stored)} events stored more than once after resends")

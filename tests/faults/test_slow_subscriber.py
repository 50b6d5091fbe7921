"""A subscriber that stops reading while events pour in: it is held back, never skipped.

The real Ensign server drops events for slow subscribers; ours back-pressures them
(PROTOCOL.md §4). The subscriber here reads nothing until every event is acked to the
publisher, many megabytes later, then reads them all, in order, none missing, none twice.
"""

from __future__ import annotations

import uuid

import pytest

from django_ensign.client import Ensign, Event, Subscription
from tests.faults.support import Ledger, sdk_client
from tests.support.server import EmbeddedServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

EVENTS = 3000
PAYLOAD = 4096  # 12 MB in all: far beyond gRPC's flow-control windows and the delivery window


async def publish_everything(client: Ensign, topic: str) -> None:
    for n in range(EVENTS):
        data = str(n).encode().ljust(PAYLOAD, b".")
        await client.publish(topic, Event(data, "text/plain", meta={"n": str(n)}))
    await client.flush(timeout=90)


async def read_everything(subscription: Subscription) -> list[int]:
    seen: list[int] = []
    async for event in subscription:
        seen.append(int(event.meta["n"]))
        await event.ack()
        if len(seen) == EVENTS:
            break
    return seen


@pytest.mark.parametrize("group", [None, "slow-readers"], ids=["live tail", "consumer group"])
async def test_a_stalled_subscriber_gets_every_event_in_order_once_it_reads(
    ensign_server: EmbeddedServer, group: str | None, ledger: Ledger
) -> None:
    topic = f"slow-{uuid.uuid4().hex[:10]}"
    publisher, reader = sdk_client(ensign_server), sdk_client(ensign_server)
    try:
        await publisher.create_topic(topic)
        subscription = reader.subscribe(topic, consumer_group=group and f"{group}-{topic}")
        await subscription.open()
        ledger.fault("stalled subscriber")
        await publish_everything(publisher, topic)
        seen = await read_everything(subscription)
        await subscription.close()
    finally:
        await publisher.close()
        await reader.close()
    ledger.iterations += 1
    ledger.events_checked += EVENTS
    ledger.lost += len(set(range(EVENTS)) - set(seen))
    assert seen == list(range(EVENTS))

"""Publishes slower than the relay's lease: the leases are renewed and nothing goes out twice.

No real server can be made slow on demand, so the delay sits between each relay and its SDK
client: every send waits before it reaches the (real) server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from django.db import transaction

from django_ensign import outbox
from django_ensign.client import Ensign
from django_ensign.models import OutboxEvent
from tests.faults.support import ClientShim, RelayThread, quick_relay_options, sdk_client
from tests.outbox.support import assert_each_once_on_server, unique_topic
from tests.support.server import EmbeddedServer

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("postgres_only"),
    pytest.mark.timeout(120),
]

LEASE = 4.0  # renewed every third of it: a late renewal has seconds to spare


class SlowSends(ClientShim):
    """Every send takes longer than the relay's lease to reach the server."""

    def __init__(self, client: Ensign, delay: float) -> None:
        super().__init__(client)
        self._delay = delay

    async def before_send(
        self, events: list[tuple[bytes, bytes]], on_nack: Callable[[Any], None] | None
    ) -> list[tuple[bytes, bytes]]:
        await asyncio.sleep(self._delay)  # the slow link: what a test can only simulate
        return events


def test_a_relay_keeps_its_leases_while_its_sends_outlast_them(
    ensign_server: EmbeddedServer,
) -> None:
    topic = unique_topic("slow")
    with transaction.atomic():
        rows = [outbox.publish(topic, {"n": n}, key=f"key-{n}") for n in range(16)]

    def client() -> Any:
        return SlowSends(sdk_client(ensign_server), delay=2.5 * LEASE)

    # Two relays: the second would claim the first's rows the moment their leases lapsed.
    options = quick_relay_options(batch_size=8, lease_seconds=LEASE)
    RelayThread.until_acked(2, options, client, topic, len(rows), timeout=60)
    assert set(OutboxEvent.objects.values_list("attempts", flat=True)) == {1}
    assert_each_once_on_server(topic, ensign_server, rows)  # no lease was lost

"""Retryable nacks injected under four relays: every event of a key still lands in key order.

The embedded server nacks with a retryable code only when its disk fails, so the nacks are
injected between each relay and its SDK client: the first send of a chosen event never
reaches the server and the relay hears the INTERNAL nack a server would send.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from django.db import transaction

from django_ensign import outbox
from django_ensign.client import Ensign, Nack, NackCode
from django_ensign.models import OutboxEvent, OutboxStatus
from django_ensign.proto.api.v1beta1 import event_pb2
from django_ensign.wire import metadata
from tests.faults.support import (
    ClientShim,
    RelayThread,
    quick_relay_options,
    sdk_client,
)
from tests.outbox.support import (
    assert_each_once_on_server,
    assert_key_order_on_server,
    unique_topic,
)
from tests.support.server import EmbeddedServer

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("postgres_only"),
    pytest.mark.timeout(180),
]

INJECTED = "injected: internal error, please wait and try again"


class NacksFirstSends(ClientShim):
    """The server refuses the first send of each chosen event with a retryable nack."""

    def __init__(self, client: Ensign, chosen: Callable[[str], bool], nacked: set[str]) -> None:
        super().__init__(client)
        self._chosen = chosen
        self.nacked = nacked  # shared by the relays: each event is refused once in all

    async def before_send(
        self, events: list[tuple[bytes, bytes]], on_nack: Callable[[Any], None] | None
    ) -> list[tuple[bytes, bytes]]:
        sent = []
        loop = asyncio.get_running_loop()
        for local_id, body in events:
            stable = event_pb2.Event.FromString(body).metadata[metadata.STABLE_ID_KEY]
            if self._chosen(stable) and stable not in self.nacked:
                self.nacked.add(stable)
                assert on_nack is not None
                # Later, as a reply from the server would come.
                loop.call_soon(on_nack, Nack(local_id, NackCode.INTERNAL, INJECTED))
            else:
                sent.append((local_id, body))
        return sent


def test_per_key_order_holds_under_four_relays_with_retryable_nacks(
    ensign_server: EmbeddedServer,
) -> None:
    topic = unique_topic("nacked")
    with transaction.atomic():
        rows = [
            outbox.publish(topic, {"n": n}, type_name="Counted", key=f"key-{n % 24}")
            for n in range(480)
        ]
    chosen = {row.event_id for row in rows[::7]}
    nacked: set[str] = set()

    def client() -> Any:
        return NacksFirstSends(sdk_client(ensign_server), chosen.__contains__, nacked)

    # Three attempts at most: a nack that counted twice, or a key released early, shows.
    # Long leases: four relay loops share this process, and leases are not what is tested.
    options = quick_relay_options(batch_size=8, max_attempts=3, lease_seconds=10.0)
    RelayThread.until_acked(4, options, client, topic, len(rows), timeout=120)
    assert nacked == chosen
    for row in OutboxEvent.objects.all():
        retried = row.event_id in chosen
        assert (row.status, row.attempts) == (OutboxStatus.ACKED, 2 if retried else 1)
        assert (INJECTED in row.last_error) == retried
    assert_each_once_on_server(topic, ensign_server, rows)  # no crash here, so no copies
    assert_key_order_on_server(topic, ensign_server, rows)

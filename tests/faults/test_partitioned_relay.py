"""A relay cut off from PostgreSQL and Ensign for longer than its lease sends nothing late.

Once its lease lapses, its rows are another relay's, which may find a row's attempts
spent, mark it dead unsent and publish the next event of its key. Had the first relay
sent that dead row's event when the network healed, it would have landed after its
successor: the events it had not sent while it was sure of its lease stay unsent.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.db import connection
from django.db.models.functions import Now

from django_ensign import outbox, relay
from django_ensign.models import OutboxEvent, OutboxStatus
from tests.faults.support import acked_count, quick_relay_options, wait_for
from tests.outbox.support import server_events, stable_ids, start_relay, stop, unique_topic
from tests.support.clients import sdk_client
from tests.support.server import EmbeddedServer
from tests.support.tcpproxy import TcpProxy

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("postgres_only"),
    pytest.mark.slow,
    pytest.mark.timeout(120),
]


def status(row: OutboxEvent) -> str:
    row.refresh_from_db(fields=["status"])
    return row.status


def lease_lapsed(row: OutboxEvent) -> bool:
    return OutboxEvent.objects.filter(pk=row.pk, lease_expires_at__lt=Now()).exists()


def test_a_relay_cut_off_past_its_lease_leaves_its_unsent_events_unsent(
    fresh_server: EmbeddedServer, tmp_path: Path
) -> None:
    topic = unique_topic("partition")
    database = connection.settings_dict
    log = tmp_path / "cut-off-relay.log"
    with (
        TcpProxy(database["HOST"] or "127.0.0.1", int(database["PORT"] or 5432)) as pg_path,
        TcpProxy("127.0.0.1", fresh_server.port) as ensign_path,
    ):
        cut_off = start_relay(
            fresh_server,
            log=log,
            TEST_RELAY_DB_PORT=str(pg_path.port),
            ENSIGN_ENDPOINT=f"127.0.0.1:{ensign_path.port}",
            TEST_RELAY_LEASE="2",
            TEST_RELAY_POLL="0.2",
        )
        try:
            warm_up = outbox.publish(topic, {"n": 0}, key="warm-up")  # the topic, looked up
            wait_for(lambda: acked_count(topic) == 1, 30, "the warm-up row acked")
            ensign_path.cut()
            first = outbox.publish(topic, {"n": 1}, key="k")
            second = outbox.publish(topic, {"n": 2}, key="k")
            wait_for(lambda: status(first) == OutboxStatus.IN_FLIGHT, 30, "the first row claimed")
            pg_path.cut()
            wait_for(lambda: lease_lapsed(first), 30, "the cut-off relay's lease lapsed")

            # Another relay takes over, and the first row's one attempt is spent.
            options = quick_relay_options(max_attempts=1, once=True)
            relay.run(options, client=sdk_client(fresh_server), handle_signals=False)
            assert (status(first), status(second)) == (OutboxStatus.DEAD, OutboxStatus.ACKED)

        finally:
            pg_path.heal()
            ensign_path.heal()
            # SIGTERM: it finishes its events in flight (it reconnects to do so) and exits.
            exit_code = stop(cut_off)

    assert stable_ids(server_events(fresh_server, topic)) == [warm_up.event_id, second.event_id]
    assert status(first) == OutboxStatus.DEAD
    assert exit_code == 0
    assert "could not be renewed" in log.read_text()

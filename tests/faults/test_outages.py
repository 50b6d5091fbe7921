"""Long outages under a running relay and subscriber: the server gone, PostgreSQL restarted.

The server outage lasts longer than every window the pipeline has for it: the relay's
publish timeout (each event's ack deadline, set short here), its lease, the SDK's reconnect
backoff cap and the subscriber's (``ENSIGN_SUBSCRIBER_RECONNECT_MAX``, 5 s). Nobody may give
up, drop or double-apply anything: when the server is back, every row is acked, stored and
applied exactly once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from django_ensign.conf import settings
from tests.faults.support import (
    APPLIED_TOPIC,
    Ledger,
    RelayThread,
    acked_count,
    applied_count,
    check_outbox_pipeline,
    ensure_postgres_up,
    pipeline_state,
    postgres_cluster,
    quick_relay_options,
    restart_postgres,
    sdk_client,
    wait_for,
    write_rows,
)
from tests.outbox.support import start_relay, stop
from tests.subscriptions.conftest import SubscriberProcess, subprocess_env
from tests.support.server import EmbeddedServer

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("postgres_only"),
    pytest.mark.slow,
    pytest.mark.timeout(180),
]

PUBLISH_TIMEOUT = 2.0


@pytest.fixture
def subscriber(fresh_server: EmbeddedServer, tmp_path: Path) -> Iterator[SubscriberProcess]:
    """``ensign_subscribe`` of the applied-events topic, in a consumer group."""
    process = SubscriberProcess(
        args=[APPLIED_TOPIC, "--group", "outages", "--concurrency", "4", "-v", "1"],
        env=subprocess_env(fresh_server),
        log=tmp_path / "subscriber.log",
    ).start()
    try:
        yield process
    finally:
        process.kill()


def test_server_outage_longer_than_every_reconnect_window_loses_nothing(
    fresh_server: EmbeddedServer, subscriber: SubscriberProcess, ledger: Ledger
) -> None:
    outage = 2 * max(settings.SUBSCRIBER_RECONNECT_MAX, PUBLISH_TIMEOUT) + 2
    # Few attempts: an outage counted against the rows would make them dead, not acked.
    options = quick_relay_options(publish_timeout=PUBLISH_TIMEOUT, max_attempts=3)
    relay = RelayThread(options, lambda: sdk_client(fresh_server, ack_timeout=PUBLISH_TIMEOUT))
    relay.start()
    try:
        rows = write_rows(APPLIED_TOPIC, 40)
        wait_for(lambda: applied_count() == 40, 60, "the first events applied")
        fresh_server.kill()
        down_since = time.monotonic()
        ledger.fault("server unreachable")
        rows += write_rows(APPLIED_TOPIC, 40, start=40)
        # Events sent before the kill time out with no stream open, later ones fail at once
        # on the unreachable server: either way they go back uncounted.
        wait_for(lambda: relay.given_back > 0, 30, "publishes to go back to the outbox")
        # The outage itself: a fault of a given length, nothing to wait for.
        time.sleep(max(0.0, down_since + outage - time.monotonic()))
        assert subscriber.process is not None
        assert subscriber.process.poll() is None, "the subscriber must ride out the outage"
        fresh_server.start()
        ledger.iterations += 1
        wait_for(lambda: acked_count(APPLIED_TOPIC) == 80, 60, "every row acked")
        wait_for(lambda: applied_count() >= 80, 60, "every event applied")
    except BaseException:
        print(pipeline_state(), subscriber.output()[-5000:])
        raise
    finally:
        relay.stop()
    assert subscriber.terminate() == 0, subscriber.output()
    verdict = check_outbox_pipeline(ledger, fresh_server, APPLIED_TOPIC, rows, handled=True)
    verdict.assert_clean()


# A crash loses the claims whose commits did not wait for the WAL flush (the claim
# function's): those rows are published again, never lost, and applied once.
@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_relay_and_subscriber_ride_out_a_postgresql_restart(
    fresh_server: EmbeddedServer,
    subscriber: SubscriberProcess,
    tmp_path: Path,
    ledger: Ledger,
    mode: str,
) -> None:
    cluster = postgres_cluster()
    if cluster is None:
        pytest.skip("PostgreSQL is not managed by pg_ctlcluster on this machine")
    log = tmp_path / "relay.log"
    relay = start_relay(fresh_server, "--batch-size", "8", log=log, TEST_RELAY_LEASE="2")
    try:
        rows = write_rows(APPLIED_TOPIC, 60)
        wait_for(lambda: acked_count(APPLIED_TOPIC) >= 20, 60, "the relay under way")
        try:
            restart_postgres(cluster, mode)
        finally:
            ensure_postgres_up(cluster)  # other tests share this PostgreSQL
        ledger.fault(f"postgresql restart ({mode})")
        ledger.iterations += 1
        rows += write_rows(APPLIED_TOPIC, 60, start=60)
        wait_for(lambda: acked_count(APPLIED_TOPIC) == 120, 90, "every row acked")
        wait_for(lambda: applied_count() >= 120, 90, "every event applied")
        assert relay.poll() is None, "the relay must ride out the restart"
    except BaseException:
        print(pipeline_state(), subscriber.output()[-5000:], log.read_text()[-3000:])
        raise
    finally:
        code = stop(relay)
    assert code == 0, log.read_text()[-3000:]
    assert subscriber.terminate() == 0, subscriber.output()[-3000:]
    verdict = check_outbox_pipeline(ledger, fresh_server, APPLIED_TOPIC, rows, handled=True)
    verdict.assert_clean()

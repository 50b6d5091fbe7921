"""Relays as real processes against the real server: several at once, crashes, outages, SIGTERM,
and the drain lock.

PostgreSQL only: the relay subprocesses must share the test's database.
"""

from __future__ import annotations

import random
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from django.db import transaction

from django_ensign import locks, outbox
from django_ensign.models import OutboxEvent, OutboxStatus
from tests.outbox.support import (
    assert_each_once_on_server,
    assert_key_order_on_server,
    client_for,
    relays_listening,
    run_async,
    server_events,
    stable_ids,
    start_relay,
    stop,
    unique_topic,
    wait_until,
)
from tests.support.server import EmbeddedServer

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("postgres_only"),
    pytest.mark.slow,
    pytest.mark.timeout(180),
]


def write(topic: str, count: int, keys: int, start: int = 0) -> list[OutboxEvent]:
    return [
        outbox.publish(topic, {"n": n}, type_name="Counted", key=f"key-{n % keys}")
        for n in range(start, start + count)
    ]


def acked() -> int:
    return OutboxEvent.objects.filter(status=OutboxStatus.ACKED).count()


def test_several_relays_publish_every_row_exactly_once(
    ensign_server: EmbeddedServer, tmp_path: Path
) -> None:
    topic = unique_topic("many")
    rows = write(topic, 300, keys=30)
    relays = [
        start_relay(ensign_server, "--batch-size", "16", log=tmp_path / f"relay{i}.log")
        for i in range(3)
    ]
    try:
        # All three in their loops before the rest is written: a relay still starting up
        # when the rows are done would be stopped before it could handle SIGTERM.
        wait_until(lambda: relays_listening() >= 3, 60, "three relays listening")
        rows += write(topic, 300, keys=30, start=300)  # more rows while they run
        wait_until(lambda: acked() == 600, 90, "600 acked rows")
    finally:
        codes = [stop(p) for p in relays]
    logs = [(tmp_path / f"relay{i}.log").read_text() for i in range(3)]
    assert codes == [0, 0, 0], logs
    # Side by side, not by turns: the relays shared the rows (all three, as a rule; two
    # at least, as a relay may lose every race for them on a loaded machine).
    claimed = [int(m.group(1)) for log in logs for m in re.finditer(r"claimed (\d+),", log)]
    assert len(claimed) == 3, logs
    assert sum(1 for n in claimed if n) >= 2, logs
    assert_each_once_on_server(topic, ensign_server, rows)
    assert_key_order_on_server(topic, ensign_server, rows)


def in_flight() -> set[int]:
    return set(
        OutboxEvent.objects.filter(status=OutboxStatus.IN_FLIGHT).values_list("id", flat=True)
    )


def test_killing_relays_at_random_points_loses_nothing(
    ensign_server: EmbeddedServer, tmp_path: Path
) -> None:
    topic = unique_topic("kill")
    rng = random.Random(2026)
    rows = write(topic, 400, keys=40)
    log = tmp_path / "relays.log"
    env = {"TEST_RELAY_LEASE": "1.5"}

    def start() -> subprocess.Popen[bytes]:
        return start_relay(ensign_server, "--batch-size", "8", log=log, **env)

    # First, kill every relay while it holds leases: those rows must come back by expiry.
    stranded: set[int] = set()
    relays: list[subprocess.Popen[bytes]] = []
    try:
        for round_ in range(5):
            relays = [start(), start()]
            wait_until(in_flight, 60, "rows in flight", every=0.01)
            for process in relays:
                process.send_signal(signal.SIGKILL)
            for process in relays:
                process.wait()
            # An ack record the relay had sent may still commit after the kill.
            stranded = in_flight()
            time.sleep(0.5)  # less than the lease, and no relay runs to reclaim them
            stranded &= in_flight()
            if stranded:
                break
            rows += write(topic, 100, keys=40, start=1000 * (round_ + 1))
        assert stranded, "no kill landed while a relay held leases"
        relays = [start(), start()]
        for round_ in range(6):
            # Past start-up, then a random point in the relay's work.
            wait_until(lambda: relays_listening() >= len(relays), 60, "the relays listening")
            time.sleep(rng.uniform(0.0, 0.3))
            victim = relays.pop(rng.randrange(len(relays)))
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            relays.append(start())
            rows += write(topic, 20, keys=40, start=400 + 20 * round_)
        wait_until(lambda: acked() == len(rows), 90, "every row acked after the kills")
        # Past start-up, so SIGTERM finds their handlers.
        wait_until(lambda: relays_listening() >= len(relays), 60, "the relays listening")
    finally:
        codes = [stop(process) for process in relays]
    assert codes == [0] * len(relays), log.read_text()
    on_server = set(stable_ids(server_events(ensign_server, topic)))
    assert on_server == {r.event_id for r in rows}  # at least once each, nothing lost
    assert_key_order_on_server(topic, ensign_server, rows)
    reclaimed = OutboxEvent.objects.filter(id__in=stranded)
    assert {(r.status, r.attempts >= 2) for r in reclaimed} == {(OutboxStatus.ACKED, True)}


def test_per_key_order_holds_under_four_relays_with_nacks_and_retries(
    ensign_server: EmbeddedServer, tmp_path: Path
) -> None:
    main, late, archived = unique_topic("main"), unique_topic("late"), unique_topic("archived")

    async def archive() -> None:
        client = client_for(ensign_server)
        try:
            await client.create_topic(main)
            await client.create_topic(archived)
            await client.archive_topic(archived)
        finally:
            await client.close()

    run_async(archive())
    rows: list[OutboxEvent] = []
    for n in range(240):
        key, nth = f"key-{n % 12}", n // 12
        # Each key's 4th and 14th events go to a topic that does not exist yet (they retry,
        # holding back their key), its 8th to an archived topic (nacked, dead at once).
        topic = late if nth % 10 == 3 else archived if nth == 7 else main
        rows.append(outbox.publish(topic, {"n": n}, type_name="Counted", key=key))
    log = tmp_path / "relays.log"
    env = {"TEST_RELAY_CREATE_TOPICS": "0"}
    relays = [start_relay(ensign_server, "--batch-size", "5", log=log, **env) for _ in range(4)]
    try:
        wait_until(lambda: relays_listening() >= 4, 60, "four relays listening")
        wait_until(
            lambda: OutboxEvent.objects.filter(status=OutboxStatus.RETRYING).exists(),
            60,
            "rows for the missing topic to retry",
        )
        run_async(_create(ensign_server, late))
        wait_until(
            lambda: (
                OutboxEvent.objects.filter(status__in=["pending", "in_flight", "retrying"]).count()
                == 0
            ),
            90,
            "every row settled",
        )
    finally:
        codes = [stop(p) for p in relays]
    assert codes == [0, 0, 0, 0], log.read_text()
    dead = OutboxEvent.objects.filter(status=OutboxStatus.DEAD)
    assert {r.topic for r in dead} == {archived}
    assert {(r.nack_code, r.nack_error) for r in dead} == {(3, "topic is archived")}
    assert acked() == sum(1 for r in rows if r.topic != archived)
    # Across topics, each key's events were committed on the server in outbox order.
    for key in {r.ordering_key for r in rows}:
        times = list(
            OutboxEvent.objects.filter(ordering_key=key, status=OutboxStatus.ACKED)
            .order_by("id")
            .values_list("acked_at", flat=True)
        )
        assert times == sorted(times), f"key {key} acked out of order"
    for topic in (main, late):
        sent = [r for r in rows if r.topic == topic]
        assert_each_once_on_server(topic, ensign_server, sent)  # no crash here, so no copies
        assert_key_order_on_server(topic, ensign_server, sent)


async def _create(server: EmbeddedServer, topic: str) -> None:
    client = client_for(server)
    try:
        await client.create_topic(topic)
    finally:
        await client.close()


def test_relay_recovers_by_itself_after_a_server_outage(
    fresh_server: EmbeddedServer, tmp_path: Path
) -> None:
    topic = unique_topic("outage")
    rows = write(topic, 50, keys=5)
    log = tmp_path / "relay.log"
    relay = start_relay(fresh_server, log=log)
    try:
        wait_until(lambda: acked() == 50, 60, "the first rows acked")
        fresh_server.kill()
        rows += write(topic, 50, keys=5, start=50)  # written while the server is down
        # Sent into the outage: they wait in the SDK (whose 60 s publish timeout outlasts
        # it) and go out when the server is back. tests/faults/test_outages.py covers an
        # outage longer than that timeout.
        wait_until(in_flight, 60, "the relay to send them")
        time.sleep(10)  # the outage itself
        assert relay.poll() is None, "the relay must ride out the outage"
        fresh_server.start()
        wait_until(lambda: acked() == 100, 90, "every row acked after the outage")
    finally:
        code = stop(relay)
    assert code == 0, log.read_text()
    assert set(stable_ids(server_events(fresh_server, topic))) == {r.event_id for r in rows}
    # Nothing counted against the rows: they went out on their first attempt.
    assert set(OutboxEvent.objects.values_list("attempts", flat=True)) == {1}


def test_sigterm_finishes_in_flight_events_and_exits(
    ensign_server: EmbeddedServer, tmp_path: Path
) -> None:
    topic = unique_topic("term")
    relay = start_relay(
        ensign_server, "--batch-size", "1", "--max-in-flight", "2", log=tmp_path / "relay.log"
    )
    try:
        wait_until(lambda: relays_listening() >= 1, 60, "the relay listening")
        with transaction.atomic():  # all at once: the relay cannot keep up with the writes
            rows = write(topic, 3000, keys=3000)
        wait_until(lambda: acked() > 0 and in_flight(), 60, "events in flight", every=0.01)
    finally:
        code = stop(relay)
    assert code == 0
    output = (tmp_path / "relay.log").read_text()
    assert f"to Ensign at {ensign_server.endpoint}; Ctrl-C or SIGTERM to stop" in output
    assert "claimed" in output
    assert not in_flight()
    # What went out was acked and recorded; the rest waits, unattempted, for the next relay.
    acked_ids = set(
        OutboxEvent.objects.filter(status=OutboxStatus.ACKED).values_list("event_id", flat=True)
    )
    assert acked_ids == set(stable_ids(server_events(ensign_server, topic)))
    assert 0 < len(acked_ids) < len(rows)
    waiting = OutboxEvent.objects.exclude(status=OutboxStatus.ACKED)
    assert {(r.status, r.attempts) for r in waiting} == {(OutboxStatus.PENDING, 0)}


def test_a_relay_of_every_topic_makes_celery_drains_skip_and_one_of_some_topics_does_not(
    ensign_server: EmbeddedServer, tmp_path: Path
) -> None:
    for args, drains_run in [((), False), (("--topic", "orders"), True)]:
        log = tmp_path / f"relay{len(args)}.log"
        relay = start_relay(ensign_server, *args, log=log)
        try:
            wait_until(lambda: relays_listening() >= 1, 60, "the relay listening")
            with locks.drain_lock() as taken:
                assert taken is drains_run, args
        finally:
            assert stop(relay) == 0
        assert "Ctrl-C or SIGTERM to stop" in log.read_text()  # with or without the lock
        wait_until(lambda: relays_listening() == 0, 30, "the relay's session gone")


def test_a_commit_wakes_a_sleeping_relay_through_notify(
    ensign_server: EmbeddedServer, tmp_path: Path
) -> None:
    topic = unique_topic("wake")
    # A polling floor far beyond the wait below: only the NOTIFY can wake the relay in time.
    relay = start_relay(ensign_server, log=tmp_path / "relay.log", TEST_RELAY_POLL="120")
    try:
        first = outbox.publish(topic, {"n": 0})  # also waits for the relay to be up
        wait_until(lambda: acked() == 1, 60, "the relay to start")
        for n in range(1, 4):
            outbox.publish(topic, {"n": n})
            wait_until(lambda n=n: acked() == n + 1, 20, f"row {n} acked after its commit")
    finally:
        assert stop(relay) == 0
    assert stable_ids(server_events(ensign_server, topic))[0] == first.event_id

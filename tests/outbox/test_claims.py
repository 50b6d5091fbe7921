"""The relay's database side: claims, leases, per-key order, recording outcomes, backoff."""

from __future__ import annotations

import datetime as dt
import random
import sqlite3
import threading
import uuid
from collections.abc import Iterator

import pytest
from django.db import connections
from django.db.models import JSONField, Value
from django.utils import timezone

from django_ensign import backoff, claims, outbox, pgclaims
from django_ensign.models import OutboxEvent, OutboxStatus

pytestmark = pytest.mark.django_db

LEASE = 30.0


def claim(limit: int = 100, **kwargs: object) -> list[claims.Claimed]:
    return claims.claim(limit=limit, lease_seconds=LEASE, **kwargs)  # type: ignore[arg-type]


def record(
    *outcomes: claims.Outcome, max_attempts: int = 5, backoff_base: float = 1.0
) -> claims.Recorded:
    return claims.record(
        outcomes,
        max_attempts=max_attempts,
        backoff_base=backoff_base,
        backoff_max=max(60.0, backoff_base),
        rng=random.Random(1),
    )


def ack(row: claims.Claimed) -> claims.Acked:
    return claims.Acked(row, dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC))


def status(row: claims.Claimed | OutboxEvent) -> str:
    return OutboxEvent.objects.get(id=row.id).status


def test_claim_leases_the_oldest_due_rows() -> None:
    rows = [outbox.publish("t", {"n": n}) for n in range(3)]
    claimed = claim(limit=2)
    assert [c.id for c in claimed] == [rows[0].id, rows[1].id]
    assert len({c.token for c in claimed}) == 1
    db = OutboxEvent.objects.get(id=rows[0].id)
    assert (db.status, db.attempts, db.lease_token) == (OutboxStatus.IN_FLIGHT, 1, claimed[0].token)
    assert db.lease_expires_at is not None
    assert db.lease_expires_at > timezone.now()
    assert [c.id for c in claim()] == [rows[2].id]  # leased rows are not claimed twice
    assert claim() == []


def test_claim_returns_what_the_relay_publishes() -> None:
    row = outbox.publish(
        "t",
        b"\x01",
        mimetype="application/octet-stream",
        type_name="T",
        type_version="1.2.3",
        meta={"m": "v"},
        key="k",
    )
    [claimed] = claim()
    assert (claimed.event_id, claimed.topic, claimed.data, claimed.mimetype) == (
        row.event_id,
        "t",
        b"\x01",
        "application/octet-stream",
    )
    assert (claimed.type_name, claimed.type_version, claimed.metadata, claimed.ordering_key) == (
        "T",
        "1.2.3",
        {"m": "v"},
        "k",
    )


def test_only_the_first_unfinished_row_of_a_key_is_claimable() -> None:
    a1 = outbox.publish("t", {"n": 1}, key="a")
    a2 = outbox.publish("t", {"n": 2}, key="a")
    b1 = outbox.publish("t", {"n": 1}, key="b")
    free = outbox.publish("t", {"n": 0})
    assert [c.id for c in claim()] == [a1.id, b1.id, free.id]
    assert claim() == []  # a2 waits for a1
    assert status(a2) == OutboxStatus.PENDING


def test_the_next_row_of_a_key_follows_once_the_previous_is_acked() -> None:
    a1 = outbox.publish("t", {"n": 1}, key="a")
    a2 = outbox.publish("t", {"n": 2}, key="a")
    [first] = claim()
    assert first.id == a1.id
    assert record(ack(first)).acked == 1
    [second] = claim()
    assert second.id == a2.id


def test_a_retrying_row_holds_back_only_its_own_key() -> None:
    a1 = outbox.publish("t", {"n": 1}, key="a")
    a2 = outbox.publish("t", {"n": 2}, key="a")
    b1 = outbox.publish("t", {"n": 1}, key="b")
    b2 = outbox.publish("t", {"n": 2}, key="b")
    first = {c.id: c for c in claim()}
    # A backoff of minutes: a1 stays out of the claims below however slow they are.
    failed = claims.Failed(first[a1.id], "internal", code=9)
    result = record(failed, ack(first[b1.id]), backoff_base=3600)
    assert (result.retrying, result.acked) == (1, 1)
    assert status(a1) == OutboxStatus.RETRYING
    assert [c.id for c in claim()] == [b2.id]  # a1 is backing off; a2 must wait behind it
    OutboxEvent.objects.filter(id=a1.id).update(next_attempt_at=timezone.now())
    assert [c.id for c in claim()] == [a1.id]
    assert status(a2) == OutboxStatus.PENDING


def test_a_nack_the_columns_cannot_hold_as_sent_is_recorded_as_they_can() -> None:
    row = outbox.publish("t", {"n": 1})
    [claimed] = claim()
    # A server's error with a NUL in it, and a code no Ensign server sends.
    assert record(claims.Failed(claimed, "bad\x00byte", code=70_000)).retrying == 1
    stored = OutboxEvent.objects.get(id=row.id)
    assert (stored.status, stored.nack_code) == (OutboxStatus.RETRYING, None)
    assert stored.nack_error == "bad\N{REPLACEMENT CHARACTER}byte"
    assert stored.last_error == "nack 70000: bad\N{REPLACEMENT CHARACTER}byte"


def test_a_dead_row_no_longer_holds_back_its_key() -> None:
    a1 = outbox.publish("t", {"n": 1}, key="a")
    a2 = outbox.publish("t", {"n": 2}, key="a")
    [first] = claim()
    record(claims.Failed(first, "topic is archived", code=backoff.TOPIC_ARCHIVED))
    assert status(a1) == OutboxStatus.DEAD
    assert [c.id for c in claim()] == [a2.id]


def test_expired_leases_are_reclaimed_with_a_new_token() -> None:
    row = outbox.publish("t", {"n": 1})
    [first] = claim()
    OutboxEvent.objects.filter(id=row.id).update(
        lease_expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    [again] = claim()
    assert (again.id, again.attempts) == (row.id, 2)
    assert again.token != first.token
    # The relay that lost the lease can no longer record anything on the row.
    assert record(ack(first)).stale == 1
    assert status(row) == OutboxStatus.IN_FLIGHT
    assert record(ack(again)).acked == 1


def test_ack_records_the_servers_commit_time() -> None:
    row = outbox.publish("t", {"n": 1})
    [claimed] = claim()
    record(ack(claimed))
    db = OutboxEvent.objects.get(id=row.id)
    assert db.status == OutboxStatus.ACKED
    assert db.acked_at == dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC)
    assert (db.lease_token, db.lease_expires_at, db.nack_code) == (None, None, None)


def test_a_late_nack_cannot_undo_an_ack() -> None:
    outbox.publish("t", {"n": 1})
    [claimed] = claim()
    record(ack(claimed))
    assert record(claims.Failed(claimed, "late", code=9)).stale == 1
    assert status(claimed) == OutboxStatus.ACKED


@pytest.mark.parametrize(
    "code",
    [
        backoff.MAX_EVENT_SIZE_EXCEEDED,
        backoff.TOPIC_ARCHIVED,
        backoff.TOPIC_DELETED,
        backoff.PERMISSION_DENIED,
    ],
)
def test_final_nacks_go_straight_to_dead_with_code_and_error(code: int) -> None:
    outbox.publish("t", {"n": 1})
    [claimed] = claim()
    assert record(claims.Failed(claimed, "refused", code=code)).dead == 1
    db = OutboxEvent.objects.get(id=claimed.id)
    assert (db.status, db.nack_code, db.nack_error) == (OutboxStatus.DEAD, code, "refused")
    assert db.last_error == f"nack {code}: refused"


def test_retryable_failures_back_off_on_the_database_clock() -> None:
    outbox.publish("t", {"n": 1})
    [claimed] = claim()
    before = timezone.now()
    record(claims.Failed(claimed, "ConnectionError: server unavailable"))
    after = timezone.now()
    db = OutboxEvent.objects.get(id=claimed.id)
    assert db.status == OutboxStatus.RETRYING
    assert (db.nack_code, db.nack_error) == (None, "")
    assert db.last_error == "ConnectionError: server unavailable"
    # attempt 1: full jitter over [0, base=1s]
    # (the database's clock may trail this process's a little: a second of slack below)
    assert before - dt.timedelta(seconds=1) <= db.next_attempt_at <= after + dt.timedelta(seconds=1)


def test_rows_past_max_attempts_are_dead() -> None:
    outbox.publish("t", {"n": 1})
    for attempt in range(1, 4):
        [claimed] = claim()
        assert claimed.attempts == attempt
        record(claims.Failed(claimed, "internal", code=9), max_attempts=3)
        OutboxEvent.objects.filter(id=claimed.id).update(next_attempt_at=timezone.now())
    db = OutboxEvent.objects.get(id=claimed.id)
    assert (db.status, db.attempts, db.nack_code) == (OutboxStatus.DEAD, 3, 9)
    assert claim() == []


@pytest.fixture
def sqlite_of_999_parameters() -> Iterator[None]:
    """SQLite built with its old default limit of 999 bound parameters per statement."""
    connection = connections["default"]
    if connection.vendor != "sqlite":
        pytest.skip("sets SQLite's own parameter limit")
    connection.ensure_connection()
    raw = connection.connection
    old = raw.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
    try:
        yield
    finally:
        raw.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, old)


@pytest.mark.usefixtures("sqlite_of_999_parameters")
def test_a_window_of_failures_past_the_parameter_limit_is_recorded() -> None:
    for n in range(600):
        outbox.publish("t", {"n": n})
    rows = claim(limit=600)
    result = record(
        *[claims.Failed(row, "internal", code=9) for row in rows[:300]],
        *[claims.Failed(row, "refused", code=1) for row in rows[300:500]],
    )
    assert (result.retrying, result.dead, len(result.dead_ids)) == (300, 200, 200)
    assert claims.release(rows[500:]) == 100
    counts = {s: OutboxEvent.objects.filter(status=s).count() for s in OutboxStatus.values}
    assert (counts["retrying"], counts["dead"], counts["pending"]) == (300, 200, 100)


def test_final_failures_of_the_sdk_are_dead_at_once() -> None:
    outbox.publish("t", {"n": 1})
    [claimed] = claim()
    record(claims.Failed(claimed, "InvalidEvent: bad", final=True))
    assert status(claimed) == OutboxStatus.DEAD


def test_renew_extends_only_live_leases_and_release_gives_rows_back() -> None:
    outbox.publish("t", {"n": 1})
    outbox.publish("t", {"n": 2})
    first, second = claim()
    OutboxEvent.objects.update(lease_expires_at=timezone.now())
    assert claims.renew([first.token, uuid.uuid4()], lease_seconds=LEASE) == 2
    assert OutboxEvent.objects.filter(lease_expires_at__gt=timezone.now()).count() == 2
    assert claims.release([second]) == 1
    db = OutboxEvent.objects.get(id=second.id)
    assert (db.status, db.attempts, db.lease_token) == (OutboxStatus.PENDING, 0, None)


def test_a_row_whose_metadata_is_json_null_claims_with_none() -> None:
    row = outbox.publish("t", {"n": 1})
    OutboxEvent.objects.filter(id=row.id).update(metadata=Value(None, JSONField()))
    [claimed] = claim()
    assert claimed.metadata == {}


def test_claim_can_be_limited_to_topics() -> None:
    outbox.publish("a", {"n": 1})
    b = outbox.publish("b", {"n": 1})
    assert [c.id for c in claim(topics=["b"])] == [b.id]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("postgres_only")
def test_concurrent_claims_on_postgresql_take_disjoint_rows() -> None:
    for n in range(200):
        outbox.publish("t", {"n": n}, key=str(n % 50))
    taken: list[list[int]] = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        barrier.wait()
        mine: list[int] = []
        while batch := claim(limit=7):
            mine += [c.id for c in batch]
            record(*[ack(c) for c in batch])
        taken.append(mine)
        connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(taken) == 4, "a worker failed or hung"
    every = [i for mine in taken for i in mine]
    assert len(every) == len(set(every)) == 200
    assert OutboxEvent.objects.filter(status=OutboxStatus.ACKED).count() == 200


def test_backoff_is_full_jitter_under_a_doubling_cap() -> None:
    rng = random.Random(7)
    for attempts, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (10, 10.0)]:
        delays = [backoff.delay(attempts, base=0.5, cap=10.0, rng=rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling / 2  # spread over the whole range, not a fixed step
    # However many attempts a high ENSIGN_OUTBOX_MAX_ATTEMPTS allows, the cap holds (no overflow).
    assert 0 <= backoff.delay(5000, base=0.5, cap=10.0, rng=rng) <= 10.0
    assert backoff.is_retryable(None)
    assert backoff.is_retryable(9)
    assert not backoff.is_retryable(3)


@pytest.mark.usefixtures("postgres_only")
def test_acks_of_interleaved_claims_record_each_row_s_own_commit_time() -> None:
    for n in range(6):
        outbox.publish("t", {"n": n})
    first, second = claim(limit=3), claim(limit=3)
    at = dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC)
    later = at + dt.timedelta(seconds=1)
    # Tokens and times alternate rather than coming in runs, and one ack has no time.
    acks = [
        (first[0].id, first[0].token, at),
        (second[0].id, second[0].token, at),
        (first[1].id, first[1].token, later),
        (second[1].id, second[1].token, None),
        (first[2].id, first[2].token, None),
        (second[2].id, second[2].token, later),
    ]
    assert pgclaims.record_acks(acks, using="default") == 6
    recorded = dict(OutboxEvent.objects.values_list("id", "acked_at"))
    assert [recorded[row.id] for row in (first[0], second[0], first[1], second[2])] == [
        at,
        at,
        later,
        later,
    ]
    # No commit time: the statement's own time, so not one of the others.
    assert recorded[second[1].id] not in (None, at, later)
    assert recorded[first[2].id] not in (None, at, later)
    assert set(OutboxEvent.objects.values_list("status", flat=True)) == {OutboxStatus.ACKED}


@pytest.mark.django_db(transaction=True)  # another connection must see the rows
def test_recording_only_deaths_on_sqlite_in_wal_mode_outlasts_a_concurrent_commit() -> None:
    connection = connections["default"]
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's WAL snapshots")
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode=WAL")
        if cursor.fetchone()[0] != "wal":
            pytest.skip("an in-memory test database has no WAL")
    other: sqlite3.Connection | None = None
    try:
        other = sqlite3.connect(connection.settings_dict["NAME"], timeout=5)
        other.execute("CREATE TABLE app_writes (n INTEGER)")
        other.commit()
        rows = [outbox.publish("t", {"n": n}) for n in range(3)]
        claimed = claim()

        def another_commit_lands(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
            result = execute(sql, params, many, context)
            if sql.lstrip().upper().startswith("SELECT"):
                # An app's write commits while the recorder's transaction holds a snapshot.
                assert other is not None
                other.execute("INSERT INTO app_writes VALUES (1)")
                other.commit()
            return result

        with connection.execute_wrapper(another_commit_lands):
            result = record(*[claims.Failed(c, "topic deleted", code=4) for c in claimed])
    finally:
        if other is not None:
            other.execute("DROP TABLE IF EXISTS app_writes")
            other.commit()
            other.close()
        with connection.cursor() as cursor:  # the only connection left: it may leave WAL
            cursor.execute("PRAGMA journal_mode=DELETE")
    assert (result.dead, sorted(result.dead_ids)) == (3, [r.id for r in rows])
    assert {status(c) for c in claimed} == {OutboxStatus.DEAD}

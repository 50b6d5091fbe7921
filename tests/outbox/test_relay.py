"""The relay publishes outbox rows to the real server and records each outcome on its row."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, OperationalError, connection, transaction
from django.db.models import QuerySet
from django.test import override_settings
from django.utils import timezone
from django.utils.connection import ConnectionDoesNotExist

from django_ensign import claims, exceptions, outbox, relay, sdkclient, tasks
from django_ensign.client import exceptions as sdk
from django_ensign.models import OutboxEvent, OutboxStatus
from django_ensign.proto.api.v1beta1 import ensign_pb2, ensign_pb2_grpc
from django_ensign.wire import metadata
from tests.outbox.support import ensign_settings, server_events, stable_ids, unique_topic
from tests.support.inprocess import StallsItsFirstStream, client_of, opened, serving
from tests.support.server import EmbeddedServer, create_apikey, free_port
from tests.testapp.models import Order

pytestmark = pytest.mark.django_db(transaction=True)


def drain(**options: object) -> relay.RelayStats:
    return relay.run(relay.RelayOptions(once=True, **options), handle_signals=False)  # type: ignore[arg-type]


def test_once_publishes_every_pending_row_and_records_the_acks(
    ensign_server: EmbeddedServer,
) -> None:
    topic = unique_topic()
    with transaction.atomic():
        rows = [
            outbox.publish(
                topic, {"n": n}, type_name="Counted", type_version="1.0.0", key=f"k{n % 3}"
            )
            for n in range(30)
        ]
    with ensign_settings(ensign_server):
        stats = drain(batch_size=7)
    assert (stats.acked, stats.dead, stats.retrying) == (30, 0, 0)
    assert (
        OutboxEvent.objects.filter(status=OutboxStatus.ACKED, acked_at__isnull=False).count() == 30
    )
    events = server_events(ensign_server, topic)
    assert sorted(stable_ids(events)) == sorted(r.event_id for r in rows)
    first = next(e for e in events if e.meta[metadata.STABLE_ID_KEY] == rows[0].event_id)
    assert json.loads(first.data) == {"n": 0}
    assert (first.type_name, first.meta[metadata.ORDERING_KEY]) == ("Counted", "k0")
    # Each row carries its own event's commit time.
    committed = {e.meta[metadata.STABLE_ID_KEY]: e.committed_at for e in events}
    for row in OutboxEvent.objects.filter(id__in=[r.id for r in rows]):
        assert row.acked_at is not None
        assert abs((row.acked_at - committed[row.event_id]).total_seconds()) < 0.001


def test_model_changes_reach_the_server_in_commit_order_per_key(
    ensign_server: EmbeddedServer,
) -> None:
    with ensign_settings(ensign_server):
        order = Order.objects.create(reference="R-1")
        key = f"testapp.order:{order.pk}"
        for total in range(1, 6):
            order.total = total
            order.save()
        order.delete()
        drain()
    # The topic is shared with every run against this server (make test runs the outbox
    # tests three times), and primary keys restart with each test database.
    written = set(OutboxEvent.objects.filter(ordering_key=key).values_list("event_id", flat=True))
    events = [
        e
        for e in server_events(ensign_server, "orders.events")
        if e.meta.get(metadata.STABLE_ID_KEY) in written
    ]
    assert [e.type_name for e in events] == ["OrderCreated"] + ["OrderUpdated"] * 5 + [
        "OrderCancelled"
    ]
    assert [float(json.loads(e.data)["total"]) for e in events[1:6]] == [1, 2, 3, 4, 5]


def test_once_ends_when_its_last_outcome_is_recorded_not_after_a_poll(
    ensign_server: EmbeddedServer,
) -> None:
    # Rows without an ordering key: no recorded outcome makes another row claimable, so
    # only the drain's end can wake the claim that finds nothing left.
    topic = unique_topic("keyless")
    for n in range(5):
        outbox.publish(topic, {"n": n})
    with ensign_settings(ensign_server):
        started = time.monotonic()
        stats = drain(poll_seconds=60.0)
    assert stats.acked == 5
    assert time.monotonic() - started < 30, "the drain waited out its poll interval"


def test_a_once_drain_ends_though_rows_keep_coming_and_leaves_them_to_the_next_run(
    ensign_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = unique_topic("steady")
    backlog = {outbox.publish(topic, {"n": n}, key=f"k{n % 2}").id for n in range(10)}
    written: list[int] = []
    claim = relay.Relay._claim

    def write_one() -> None:
        try:
            written.append(outbox.publish(topic, {"late": len(written)}).id)
        finally:
            connection.close()

    async def claim_with_a_new_row_committed_first(self: relay.Relay, limit: int) -> Any:
        # A writer as fast as the claims; the cap only ends a drain that would follow it.
        if len(written) < 200:
            await asyncio.to_thread(write_one)
        return await claim(self, limit)

    monkeypatch.setattr(relay.Relay, "_claim", claim_with_a_new_row_committed_first)
    with ensign_settings(ensign_server):
        drain(batch_size=4)
    acked = set(OutboxEvent.objects.filter(status=OutboxStatus.ACKED).values_list("id", flat=True))
    assert backlog <= acked
    assert len(written) < 50, "the drain kept claiming the rows written while it ran"
    assert set(
        OutboxEvent.objects.exclude(status=OutboxStatus.ACKED).values_list("id", flat=True)
    ) <= set(written)


def test_topics_are_created_on_first_use_unless_turned_off(ensign_server: EmbeddedServer) -> None:
    topic = unique_topic("nocreate")
    row = outbox.publish(topic, {"n": 1})
    # Full jitter has no floor: with a 60 s ceiling one run in a few thousand drew a delay short
    # enough for the same drain to retry the row. A ceiling of weeks makes that a one in 10^7.
    off = {
        "ENSIGN_OUTBOX_CREATE_TOPICS": False,
        "ENSIGN_OUTBOX_BACKOFF_BASE": 1e6,
        "ENSIGN_OUTBOX_BACKOFF_MAX": 1e7,
    }
    with ensign_settings(ensign_server, **off):
        stats = drain()
    assert stats.retrying == 1
    db = OutboxEvent.objects.get(id=row.id)
    assert db.status == OutboxStatus.RETRYING
    assert "does not exist" in db.last_error
    OutboxEvent.objects.update(next_attempt_at=db.created)
    with ensign_settings(ensign_server):
        assert drain().acked == 1
    assert stable_ids(server_events(ensign_server, topic)) == [row.event_id]


def test_topic_filter_publishes_only_those_topics(ensign_server: EmbeddedServer) -> None:
    wanted, other = unique_topic(), unique_topic()
    outbox.publish(wanted, {"n": 1})
    skipped = outbox.publish(other, {"n": 1})
    with ensign_settings(ensign_server):
        assert drain(topics=[wanted]).acked == 1
    assert OutboxEvent.objects.get(id=skipped.id).status == OutboxStatus.PENDING


# 20 MB: more than the server's event limit and more than gRPC's default message
# size, which used to end the stream at each resend until the ack timeout.
@pytest.mark.parametrize("size", [5_300_000, 20_000_000])
def test_events_the_server_refuses_are_dead_with_its_nack_code(
    ensign_server: EmbeddedServer, size: int
) -> None:
    topic = unique_topic("big")
    small = outbox.publish(topic, {"n": 1}, key="k")
    big = outbox.publish(topic, b"x" * size, key="k")
    after = outbox.publish(topic, {"n": 2}, key="k")
    # A short ack timeout: a broken stream must not pass for a slow server.
    with ensign_settings(ensign_server):
        stats = drain(publish_timeout=10)
    assert (stats.acked, stats.dead) == (2, 1)
    dead = OutboxEvent.objects.get(id=big.id)
    assert (dead.status, dead.nack_code) == (OutboxStatus.DEAD, 1)  # MAX_EVENT_SIZE_EXCEEDED
    assert dead.nack_error == "maximum event size has been exceeded"
    assert dead.attempts == 1  # never retried
    # The dead event does not hold back the rest of its key.
    assert stable_ids(server_events(ensign_server, topic)) == [small.event_id, after.event_id]


def test_dead_rows_can_be_requeued_and_then_published(ensign_server: EmbeddedServer) -> None:
    from django_ensign import housekeeping

    topic = unique_topic("requeue")
    row = outbox.publish(topic, {"n": 1})
    with ensign_settings(
        ensign_server, ENSIGN_OUTBOX_CREATE_TOPICS=False, ENSIGN_OUTBOX_MAX_ATTEMPTS=1
    ):
        assert drain().dead == 1
    db = OutboxEvent.objects.get(id=row.id)
    assert db.status == OutboxStatus.DEAD
    assert "UnknownTopic" in db.last_error
    assert housekeeping.requeue_dead(OutboxEvent.objects.all()) == 1
    with ensign_settings(ensign_server):
        assert drain().acked == 1
    assert stable_ids(server_events(ensign_server, topic)) == [row.event_id]


def test_publish_outbox_command_once_reports_what_it_did(ensign_server: EmbeddedServer) -> None:
    topic = unique_topic("cmd")
    for n in range(5):
        outbox.publish(topic, {"n": n})
    out = StringIO()
    with ensign_settings(ensign_server):
        call_command(
            "ensign_publish_outbox",
            "--once",
            "--batch-size",
            "2",
            "--max-in-flight",
            "3",
            "--topic",
            topic,
            stdout=out,
        )
    assert out.getvalue().strip() == "claimed 5, acked 5, retrying 0, dead 0, released 0"


@pytest.mark.parametrize("option", ["--batch-size", "--max-in-flight"])
@pytest.mark.parametrize("value", ["0", "-1"])
def test_publish_outbox_command_refuses_counts_below_one(option: str, value: str) -> None:
    with pytest.raises(CommandError, match=option):
        call_command("ensign_publish_outbox", "--once", option, value)


def test_publish_outbox_command_names_a_database_alias_that_is_not_configured() -> None:
    out = StringIO()
    with pytest.raises(CommandError, match="The connection 'nowhere' doesn't exist"):
        call_command("ensign_publish_outbox", "--database", "nowhere", stdout=out)
    assert out.getvalue() == ""  # refused before the lock and the greeting


def _waiting_untouched(topic: str, count: int) -> None:
    """Every row of ``topic`` waits as written: pending, no attempt counted, no lease."""
    rows = OutboxEvent.objects.filter(topic=topic)
    assert rows.count() == count
    assert set(rows.values_list("status", "attempts", "lease_token")) == {
        (OutboxStatus.PENDING, 0, None)
    }


def test_once_with_ensign_unreachable_fails_and_leaves_the_rows_uncounted() -> None:
    topic = unique_topic("down")
    for n in range(6):
        outbox.publish(topic, {"n": n})
    nowhere = free_port()  # nothing listens there: neither gRPC nor the auth service
    with (
        override_settings(
            ENSIGN_ENDPOINT=f"127.0.0.1:{nowhere}",
            ENSIGN_AUTH_URL=f"http://127.0.0.1:{nowhere}",
            ENSIGN_INSECURE=True,
            ENSIGN_CLIENT_ID="a" * 32,
            ENSIGN_CLIENT_SECRET="b" * 64,
        ),
        pytest.raises(CommandError, match="could not be reached"),
    ):
        call_command("ensign_publish_outbox", "--once", "--topic", topic, stdout=StringIO())
    _waiting_untouched(topic, 6)


@pytest.mark.parametrize("refusal", ["wrong secret", "no publisher permission"])
def test_a_relay_ensign_refuses_stops_with_the_reason_and_counts_no_attempt(
    ensign_server: EmbeddedServer, refusal: str
) -> None:
    topic = unique_topic("refused")
    for n in range(6):
        outbox.publish(topic, {"n": n})
    if refusal == "wrong secret":
        creds = {"ENSIGN_CLIENT_SECRET": "x" * 64}
    else:
        key = create_apikey(ensign_server, "topics:read,topics:create,subscriber")
        creds = {"ENSIGN_CLIENT_ID": key["ClientID"], "ENSIGN_CLIENT_SECRET": key["ClientSecret"]}
    out = StringIO()
    with (
        ensign_settings(ensign_server, **creds),
        pytest.raises(CommandError, match="Ensign refused the relay"),
    ):
        # Not --once: a running relay stops too, rather than retrying for ever.
        call_command("ensign_publish_outbox", "--topic", topic, stdout=out)
    assert "acked 0" in out.getvalue()
    _waiting_untouched(topic, 6)


class _RefusedWhileWaitingOutAnOutage(relay.Relay):
    """Its first publish finds Ensign down; a publish still in flight is refused in the pause."""

    outages = 0

    async def _publish(self, rows: list[claims.Claimed]) -> None:
        if self.outages == 0:
            self.outages += 1
            self._in_flight += len(rows)
            self._gave_back(rows, sdk.StreamDown("no publish stream to the server is open"))
            return
        self.stop()  # claimed again, so the refusal was forgotten: publish and end the test
        await super()._publish(rows)

    async def _wait_out_trouble(self) -> None:
        refusal = sdk.PermissionDenied("the API key lacks the publisher permission")
        asyncio.get_running_loop().call_soon(self._gave_back, [], refusal)
        await super()._wait_out_trouble()


def test_a_refusal_during_an_outage_pause_stops_the_relay(
    ensign_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(relay, "OUTAGE_PAUSE_FIRST", 0.05)
    topic = unique_topic("refused-in-pause")
    for n in range(4):
        outbox.publish(topic, {"n": n})
    with ensign_settings(ensign_server):
        refused_relay = _RefusedWhileWaitingOutAnOutage(relay.RelayOptions(topics=[topic]))
        with pytest.raises(exceptions.RelayStopped, match="publisher permission") as stopped:
            asyncio.run(refused_relay.run())
    assert stopped.value.refused
    _waiting_untouched(topic, 4)


class _StopsAfterFirstClaim(relay.Relay):
    """A relay asked to stop while it publishes its first claim (the next claim is running)."""

    async def _publish(self, rows: list[claims.Claimed]) -> None:
        self.stop()
        self._stopping = False  # publish this claim as usual, then stop
        await super()._publish(rows)
        self._stopping = True


class _ClaimAheadFails(_StopsAfterFirstClaim):
    """As above, but the claim made ahead fails with an error that is not the database's."""

    claims_made = 0

    async def _claim(self, limit: int) -> list[claims.Claimed]:
        self.claims_made += 1
        if self.claims_made == 2:
            raise RuntimeError("the claim ahead broke")
        return await super()._claim(limit)


def stop_during_first_claim(
    server: EmbeddedServer, relay_class: type[relay.Relay], topic: str
) -> tuple[relay.RelayStats, QuerySet[OutboxEvent]]:
    """Write 20 rows for ``topic``, run ``relay_class`` with claims of 5; stats and the rows."""
    for n in range(20):
        outbox.publish(topic, {"n": n})
    with ensign_settings(server):
        options = relay.RelayOptions(batch_size=5, max_in_flight=100, topics=[topic])
        stats = asyncio.run(relay_class(options).run())
    return stats, OutboxEvent.objects.filter(topic=topic)


def test_stopping_records_every_outcome_and_gives_back_rows_claimed_ahead(
    ensign_server: EmbeddedServer,
) -> None:
    stats, rows = stop_during_first_claim(ensign_server, _StopsAfterFirstClaim, unique_topic())
    assert (stats.claimed, stats.acked, stats.released) == (10, 5, 5)
    # Recorded before the relay returned, though the acks came as it was shutting down.
    assert rows.filter(status=OutboxStatus.ACKED).count() == 5
    # Given back, not left leased: the next relay publishes them at once, as first attempts.
    waiting = rows.filter(status=OutboxStatus.PENDING)
    assert waiting.count() == 15
    assert not waiting.filter(lease_token__isnull=False).exists()
    assert set(waiting.values_list("attempts", flat=True)) == {0}


def test_a_claim_ahead_that_fails_still_lets_the_published_rows_be_recorded(
    ensign_server: EmbeddedServer,
) -> None:
    stats, rows = stop_during_first_claim(ensign_server, _ClaimAheadFails, unique_topic())
    assert (stats.claimed, stats.acked, stats.released) == (5, 5, 0)
    assert rows.filter(status=OutboxStatus.ACKED).count() == 5
    assert rows.filter(status=OutboxStatus.PENDING, lease_token__isnull=True).count() == 15


class _RecordsClaims(relay.Relay):
    """A relay that notes the row limit of each claim it makes."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.limits: list[int] = []

    async def _claim(self, limit: int) -> list[claims.Claimed]:
        self.limits.append(limit)
        return await super()._claim(limit)


def test_replies_that_come_one_at_a_time_are_still_claimed_for_in_batches(
    ensign_server: EmbeddedServer,
) -> None:
    # Plain framing answers each event on its own: the window frees a row at a time, and
    # a claim per freed row would cost the database a statement per event.
    topic = unique_topic("one-at-a-time")
    with transaction.atomic():
        for n in range(200):
            outbox.publish(topic, {"n": n})
    with ensign_settings(ensign_server):

        async def run() -> tuple[relay.RelayStats, list[int]]:
            client = sdkclient.client_from_settings(max_in_flight=20, batch=False)
            options = relay.RelayOptions(once=True, batch_size=10, max_in_flight=20)
            recording = _RecordsClaims(options, client=client)
            try:
                return await recording.run(), recording.limits
            finally:
                await client.close()

        stats, limits = asyncio.run(run())
    assert stats.acked == 200
    assert set(limits) == {10}
    assert OutboxEvent.objects.filter(topic=topic, status=OutboxStatus.ACKED).count() == 200


class _NeverAnswers(ensign_pb2_grpc.EnsignServicer):
    """Opens publish streams and answers none of their events (a stalled server)."""

    def __init__(self, topic: str) -> None:
        self.topic = topic

    async def Publish(
        self, request_iterator: AsyncIterator[ensign_pb2.PublisherRequest], context: object
    ) -> AsyncIterator[ensign_pb2.PublisherReply]:
        yield await opened(request_iterator, {self.topic: b"\x01" * 16})
        async for _ in request_iterator:
            pass


def test_a_long_lease_does_not_keep_a_stalled_write_past_the_publish_timeout() -> None:
    # A row can go dead at the publish timeout, and the next of its key go out: a write
    # gRPC still held of it must end there, not when a lease of minutes would run out. It
    # counts an attempt, as a timeout does.
    topic = unique_topic()
    rows = [
        outbox.publish(topic, bytes(256 * 1024), mimetype="application/octet-stream")
        for _ in range(48)
    ]
    servicer = StallsItsFirstStream({topic: b"\x01" * 16})  # type: ignore[abstract]

    async def run() -> relay.RelayStats:
        async with serving(servicer) as port:
            client = client_of(port, {topic: b"\x01" * 16}, ack_timeout=3.0)
            options = relay.RelayOptions(
                once=True,
                publish_timeout=1.5,
                lease_seconds=300.0,
                create_topics=False,
                max_attempts=4,
                backoff_base=0.0,  # due again at once, so the drain claims them again
                backoff_max=0.2,
            )
            try:
                return await asyncio.wait_for(relay.Relay(options, client=client).run(), 60)
            finally:
                await asyncio.wait_for(client.close(), 30)

    stats = asyncio.run(run())
    assert stats.acked == len(rows)
    written = OutboxEvent.objects.filter(topic=topic)
    assert set(written.values_list("status", "attempts")) == {(OutboxStatus.ACKED, 2)}
    assert servicer.streams == 2


def drain_against(
    servicer: ensign_pb2_grpc.EnsignServicer, topic: str, *, timeout: float
) -> relay.RelayStats:
    """A ``once`` drain of ``topic`` against an in-process ``servicer``, giving up on an
    event's reply after ``timeout`` seconds."""

    async def run() -> relay.RelayStats:
        async with serving(servicer) as port:
            client = client_of(port, {topic: b"\x01" * 16}, ack_timeout=timeout)
            options = relay.RelayOptions(once=True, publish_timeout=timeout, create_topics=False)
            try:
                return await asyncio.wait_for(relay.Relay(options, client=client).run(), 30)
            finally:
                await client.close()

    return asyncio.run(run())


def test_an_event_the_client_gave_up_on_records_its_error_and_no_server_nack_code() -> None:
    topic = unique_topic()
    row = outbox.publish(topic, {"n": 1})

    stats = drain_against(_NeverAnswers(topic), topic, timeout=0.5)  # type: ignore[abstract]
    assert (stats.acked, stats.retrying) == (0, 1)
    row.refresh_from_db()
    assert (row.status, row.attempts, row.nack_code) == (OutboxStatus.RETRYING, 1, None)
    assert row.last_error.startswith("PublishTimeout")


class _AcksWithCommitTime(ensign_pb2_grpc.EnsignServicer):
    """Acks every event with the commit time it is given (a server with a broken clock)."""

    def __init__(self, topic: str, seconds: int) -> None:
        self.topic = topic
        self.seconds = seconds

    async def Publish(
        self, request_iterator: AsyncIterator[ensign_pb2.PublisherRequest], context: object
    ) -> AsyncIterator[ensign_pb2.PublisherReply]:
        yield await opened(request_iterator, {self.topic: b"\x01" * 16})
        async for request in request_iterator:
            ack = ensign_pb2.Ack(id=request.event.local_id)
            if self.seconds:
                ack.committed.seconds = self.seconds
            yield ensign_pb2.PublisherReply(ack=ack)


@pytest.mark.parametrize("seconds", [0, 2**62], ids=["unset", "past-datetime"])
def test_an_ack_without_a_usable_commit_time_is_recorded_at_the_database_s(seconds: int) -> None:
    topic = unique_topic()
    row = outbox.publish(topic, {"n": 1})

    before = timezone.now()
    servicer = _AcksWithCommitTime(topic, seconds)  # type: ignore[abstract]
    assert drain_against(servicer, topic, timeout=5).acked == 1
    row.refresh_from_db()
    assert row.status == OutboxStatus.ACKED
    assert row.acked_at is not None
    assert row.acked_at >= before - dt.timedelta(seconds=5)


def test_a_row_whose_relays_keep_dying_goes_dead_past_the_attempt_limit(
    ensign_server: EmbeddedServer,
) -> None:
    topic = unique_topic()
    row = outbox.publish(topic, {"n": 1})
    # What a relay killed while sending it, for the third time, leaves behind.
    OutboxEvent.objects.filter(id=row.id).update(
        status=OutboxStatus.IN_FLIGHT,
        attempts=3,
        lease_token=uuid.uuid4(),
        lease_expires_at=timezone.now() - dt.timedelta(seconds=1),
    )
    with ensign_settings(ensign_server):
        stats = drain(max_attempts=3)
    assert (stats.acked, stats.dead) == (0, 1)
    row.refresh_from_db()
    assert (row.status, row.attempts) == (OutboxStatus.DEAD, 4)
    assert "past the limit of 3" in row.last_error
    assert server_events(ensign_server, topic) == []  # not sent a fourth time


def stopped_during_lookup(server: EmbeddedServer, **options: Any) -> relay.RelayStats:
    """Run a ``once`` relay told to stop (as by SIGTERM) while it looks its first topic up."""

    async def run() -> relay.RelayStats:
        client = relay.make_client(max_in_flight=10)
        lookup = client._admin.lookup
        running = relay.Relay(relay.RelayOptions(once=True, **options), client=client)

        async def stopping_lookup(name: str) -> bytes | None:
            running.stop()
            return await lookup(name)

        client._admin.lookup = stopping_lookup
        try:
            return await running.run()
        finally:
            await client.close()

    with ensign_settings(server):
        return asyncio.run(run())


def drain_within_ten_seconds(server: EmbeddedServer, **options: Any) -> relay.RelayStats:
    """A ``once`` drain that fails the test by timing out rather than hang it."""

    async def run() -> relay.RelayStats:
        drain = relay.Relay(relay.RelayOptions(once=True, poll_seconds=0.05, **options)).run()
        return await asyncio.wait_for(drain, 10)

    with ensign_settings(server):
        return asyncio.run(run())


def test_a_stop_during_the_topic_lookup_sends_nothing_and_gives_the_rows_back(
    ensign_server: EmbeddedServer,
) -> None:
    topic = unique_topic()
    row = outbox.publish(topic, {"n": 1})

    stats = stopped_during_lookup(ensign_server)
    assert stats.acked == 0
    row.refresh_from_db()
    assert (row.status, row.attempts) == (OutboxStatus.PENDING, 0)
    assert server_events(ensign_server, topic) == []


def test_a_give_back_that_fails_to_write_is_retried_and_counts_no_attempt(
    ensign_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = unique_topic()
    row = outbox.publish(topic, {"n": 1})
    release = claims.release
    failures: list[int] = []

    def release_failing_once(rows: list[claims.Claimed], **kwargs: object) -> int:
        if not failures:
            failures.append(len(rows))
            raise DatabaseError("connection lost")
        return release(rows, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(claims, "release", release_failing_once)

    stats = stopped_during_lookup(ensign_server, poll_seconds=0.05)
    assert failures == [1]
    assert stats.released == 1
    # Waiting again as a first attempt, not leased with an attempt counted for nothing sent
    # (at the attempt limit that would make it dead unsent).
    row.refresh_from_db()
    assert (row.status, row.attempts, row.lease_token) == (OutboxStatus.PENDING, 0, None)


def test_a_once_drain_the_database_keeps_failing_ends_with_the_error(
    ensign_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A Celery drain or a cron --once run must end (and free the drain lock), not wait for
    # a database that is gone or an alias without the table.
    outbox.publish(unique_topic(), {"n": 1})
    monkeypatch.setattr(relay, "ONCE_DATABASE_PATIENCE", 0.3)

    async def failing_claim(self: relay.Relay, limit: int) -> list[claims.Claimed]:
        raise OperationalError("the database is gone")

    monkeypatch.setattr(relay.Relay, "_claim", failing_claim)

    with pytest.raises(OperationalError, match="gone"):
        drain_within_ten_seconds(ensign_server)


def test_a_once_drain_that_cannot_record_its_acks_ends_with_the_error(
    ensign_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = unique_topic()
    for n in range(40):
        outbox.publish(topic, {"n": n})
    monkeypatch.setattr(relay, "ONCE_DATABASE_PATIENCE", 0.3)

    async def failing_record(self: relay.Relay, batch: list[claims.Outcome]) -> claims.Recorded:
        raise OperationalError("the database is gone")

    monkeypatch.setattr(relay.Relay, "_record", failing_record)

    with pytest.raises(OperationalError, match="gone"):
        drain_within_ten_seconds(ensign_server, batch_size=5, max_in_flight=10)
    # It stopped claiming once it gave up: the rows it sent wait out their leases (then go
    # out again), and the rest wait untouched, rather than all being sent unrecorded.
    # (Rows claimed as it stopped are given back, which cannot be recorded either: leased too.)
    sent = set(stable_ids(server_events(ensign_server, topic)))
    rows = OutboxEvent.objects.filter(topic=topic)
    leased = set(rows.filter(status=OutboxStatus.IN_FLIGHT).values_list("event_id", flat=True))
    assert sent
    assert sent <= leased
    assert len(leased) <= 20
    assert rows.filter(status=OutboxStatus.PENDING, attempts=0).count() == 40 - len(leased)


def test_a_relay_stopped_while_its_outcomes_cannot_be_written_gives_up_and_exits(
    ensign_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = unique_topic()
    for n in range(10):
        outbox.publish(topic, {"n": n})
    monkeypatch.setattr(relay, "ONCE_DATABASE_PATIENCE", 0.3)

    async def failing_record(self: relay.Relay, batch: list[claims.Outcome]) -> claims.Recorded:
        self.stop()  # SIGTERM, come while the database is out
        raise OperationalError("the database is gone")

    monkeypatch.setattr(relay.Relay, "_record", failing_record)

    async def run() -> relay.RelayStats:
        running = relay.Relay(relay.RelayOptions(poll_seconds=0.05, topics=[topic]))
        return await asyncio.wait_for(running.run(), 10)

    with ensign_settings(ensign_server), pytest.raises(OperationalError, match="gone"):
        asyncio.run(run())
    # What it sent stays leased, to go out again once the leases lapse.
    sent = set(stable_ids(server_events(ensign_server, topic)))
    leased = OutboxEvent.objects.filter(topic=topic, status=OutboxStatus.IN_FLIGHT)
    assert sent
    assert sent <= set(leased.values_list("event_id", flat=True))


def test_leases_are_renewed_while_a_write_of_outcomes_is_stuck(
    ensign_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A renewal queued behind a stuck write would let the lease lapse, and another relay
    # publish the same rows meanwhile.
    outbox.publish(unique_topic(), {"n": 1})
    renewed = threading.Event()
    renew, record = claims.renew, claims.record

    def noting_renew(tokens: list[uuid.UUID], **kwargs: Any) -> int:
        renewed.set()
        return renew(tokens, **kwargs)

    def stuck_record(outcomes: list[claims.Outcome], **kwargs: Any) -> claims.Recorded:
        renewed.clear()
        stuck_until_renewed.append(renewed.wait(5.0))
        return record(outcomes, **kwargs)

    stuck_until_renewed: list[bool] = []
    monkeypatch.setattr(claims, "renew", noting_renew)
    monkeypatch.setattr(claims, "record", stuck_record)

    # The row is given back: a write of outcomes on the recorder.
    stats = stopped_during_lookup(ensign_server, lease_seconds=0.3)
    assert stuck_until_renewed == [True]
    assert stats.released == 1


def test_a_slow_topic_lookup_does_not_count_against_the_events_reply_time(
    ensign_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = unique_topic()
    row = outbox.publish(topic, {"n": 1})
    monkeypatch.setattr(relay, "EXPIRY_GRACE", 0.1)
    looked_up: list[str] = []

    async def publish_after_a_slow_lookup() -> relay.RelayStats:
        client = relay.make_client(max_in_flight=10, ack_timeout=2.0)
        lookup = client._admin.lookup

        async def slow_lookup(name: str) -> bytes | None:
            looked_up.append(name)
            await asyncio.sleep(3.0)  # the server's answer is late: longer than the timeout
            return await lookup(name)

        client._admin.lookup = slow_lookup
        options = relay.RelayOptions(once=True, publish_timeout=2.0)
        try:
            return await relay.Relay(options, client=client).run()
        finally:
            await client.close()

    with ensign_settings(ensign_server):
        stats = asyncio.run(publish_after_a_slow_lookup())
    assert looked_up == [topic]
    assert (stats.acked, stats.retrying) == (1, 0)
    row.refresh_from_db()
    assert (row.status, row.attempts) == (OutboxStatus.ACKED, 1)
    assert stable_ids(server_events(ensign_server, topic)) == [row.event_id]


@pytest.mark.timeout(60)  # the recorder used to retry the ack record forever
@override_settings(USE_TZ=False)
def test_a_project_without_time_zones_records_each_ack(ensign_server: EmbeddedServer) -> None:
    topic = unique_topic()
    row = outbox.publish(topic, {"n": 1})
    with ensign_settings(ensign_server):
        stats = drain()
    assert stats.acked == 1
    row.refresh_from_db()
    assert row.status == OutboxStatus.ACKED
    assert row.acked_at is not None
    assert row.acked_at.tzinfo is None


class _OutboxWritesGoToOther:
    def db_for_write(self, model: type, **hints: object) -> str | None:
        return "other" if model is OutboxEvent else None


def test_relays_and_drains_default_to_the_database_the_router_writes_outbox_rows_to(
    ensign_server: EmbeddedServer,
) -> None:
    with (
        ensign_settings(ensign_server),
        override_settings(DATABASE_ROUTERS=[_OutboxWritesGoToOther()]),
    ):
        assert relay.RelayOptions().using == "other"
        assert relay.RelayOptions(using="default").using == "default"
        # "other" is no configured database: each entry point names it as it fails.
        with pytest.raises(CommandError, match="'other'"):
            call_command("ensign_publish_outbox", "--once")
        with pytest.raises(ConnectionDoesNotExist, match="'other'"):
            tasks.publish_outbox()
    assert relay.RelayOptions().using == "default"


@pytest.mark.parametrize(
    ("lease_seconds", "keepalive_ms"), [(30.0, 3_000), (2.0, 1_000), (600.0, 20_000)]
)
def test_the_relays_client_drops_a_stalled_connection_within_a_tenth_of_the_lease(
    ensign_server: EmbeddedServer, lease_seconds: float, keepalive_ms: int
) -> None:
    # What it sent before its send deadline (80 % of the lease) then reaches the server
    # within the lease, or never: gRPC sets this timeout as TCP_USER_TIMEOUT on Linux.
    with ensign_settings(ensign_server, ENSIGN_OUTBOX_LEASE_SECONDS=lease_seconds):
        client = relay.make_client(max_in_flight=10)
    options = dict(client._connection._options)
    assert options["grpc.keepalive_timeout_ms"] == keepalive_ms

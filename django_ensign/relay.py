"""The outbox relay: an asyncio program that publishes outbox rows to Ensign.

One loop claims rows under a lease (a short transaction in a database thread),
publishes them over the SDK's one publish stream within a bounded in-flight window,
and hands each Ack or Nack to a recorder that writes them back in batches, guarded
by the lease. Nothing waits on the network inside a transaction. Rows sharing an
ordering key go out one at a time, so their order on the server is commit order.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import logging
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from django.db import Error as DatabaseError  # also InterfaceError: a connection that died
from django.db import connections

from django_ensign import claims, databases, exceptions, models, notify, sendwindows, workerdb
from django_ensign.conf import settings
from django_ensign.publishfailures import Trouble, trouble
from django_ensign.runs import identity_runs
from django_ensign.sdkclient import client_from_settings
from django_ensign.wire import metadata

if TYPE_CHECKING:
    from django_ensign.pgasync import AsyncStatements

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds the recorder waits for more outcomes when fewer than a claim's worth are in.
RECORD_LINGER = 0.005
#: Seconds a relay waits before claiming again after Ensign could not be reached; the
#: pause doubles while the outage lasts, up to OUTAGE_PAUSE_MAX.
OUTAGE_PAUSE_FIRST = 0.5
OUTAGE_PAUSE_MAX = 5.0
#: Seconds past ``publish_timeout`` before the relay itself gives up on an event's reply.
EXPIRY_GRACE = 2.0
#: Seconds a ``once`` drain, or a relay told to stop, keeps retrying a database that fails
#: it before it gives up (a relay that runs on keeps retrying: it has nothing else to do).
ONCE_DATABASE_PATIENCE = 30.0


@dataclass
class RelayStats:
    """What one run of the relay did."""

    claimed: int = 0
    acked: int = 0
    retrying: int = 0
    dead: int = 0
    stale: int = 0
    released: int = 0


@dataclass
class RelayOptions:
    """How a relay runs; the defaults come from the ``ENSIGN_OUTBOX_*`` settings."""

    batch_size: int = field(default_factory=lambda: settings.OUTBOX_BATCH_SIZE)
    max_in_flight: int = field(default_factory=lambda: settings.OUTBOX_MAX_IN_FLIGHT)
    topics: Sequence[str] = ()
    once: bool = False
    #: The outbox table's database alias (default: where the router writes outbox rows).
    using: str = field(default_factory=models.outbox_alias)
    lease_seconds: float = field(default_factory=lambda: settings.OUTBOX_LEASE_SECONDS)
    poll_seconds: float = field(default_factory=lambda: settings.OUTBOX_POLL_SECONDS)
    create_topics: bool = field(default_factory=lambda: settings.OUTBOX_CREATE_TOPICS)
    max_attempts: int = field(default_factory=lambda: settings.OUTBOX_MAX_ATTEMPTS)
    backoff_base: float = field(default_factory=lambda: settings.OUTBOX_BACKOFF_BASE)
    backoff_max: float = field(default_factory=lambda: settings.OUTBOX_BACKOFF_MAX)
    listen: bool = field(default_factory=lambda: settings.OUTBOX_NOTIFY)
    #: Seconds to wait for one event's Ack or Nack before counting it as failed.
    publish_timeout: float = 60.0


def make_client(
    max_in_flight: int, ack_timeout: float = 60.0, lease_seconds: float | None = None
) -> Any:
    """An SDK client configured from the ``ENSIGN_*`` settings, for leases of ``lease_seconds``."""
    lease = settings.OUTBOX_LEASE_SECONDS if lease_seconds is None else lease_seconds
    return client_from_settings(
        max_in_flight=max_in_flight,
        ack_timeout=ack_timeout,
        keepalive_timeout=sendwindows.keepalive_timeout(lease),
    )


class _DatabaseThread:
    """One thread with its own Django connection, so database calls never block the loop."""

    def __init__(self, name: str, using: str) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=name)
        self._using = using

    async def run(self, func: Callable[..., T], /, **kwargs: Any) -> T:
        def call() -> T:
            workerdb.refresh_connections()
            return func(using=self._using, **kwargs)

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, connections.close_all)
        self._executor.shutdown(wait=False)


class Relay:
    """Publishes outbox rows until stopped (or, with ``once``, until none written before
    it began is due).

    ``client`` is for tests and tools: an SDK client whose ``publish_encoded`` takes
    ``send_by``. Without one, the relay makes its own from the settings, with a keepalive
    timeout fitted to the lease (:func:`make_client`).
    """

    def __init__(self, options: RelayOptions | None = None, *, client: Any = None) -> None:
        self.options = options or RelayOptions()
        self.stats = RelayStats()
        self._client = client
        self._owns_client = client is None
        self._stopping = False
        self._wake = asyncio.Event()
        self._outcomes: list[claims.Outcome] = []
        self._outcome_ready = asyncio.Event()
        self._recording = asyncio.Lock()
        #: Rows claimed whose Ack or Nack has not come yet (the in-flight window).
        self._in_flight = 0
        #: Outcomes come but not yet written back; bounded so a slow database holds claims back.
        self._unrecorded = 0
        self._leases: Counter[uuid.UUID] = Counter()
        #: Per lease token, until when its rows' events may still be sent.
        self._windows: sendwindows.SendWindows | None = None
        #: Tokens whose rows' events were not sent as their lease may have lapsed (logged).
        self._lapsed: set[uuid.UUID] = set()
        #: local id → (row, monotonic deadline) of each event sent and not yet answered.
        self._pending: dict[bytes, tuple[claims.Claimed, float]] = {}
        self._last_commit: tuple[tuple[int, int], dt.datetime | None] = ((-1, -1), None)
        self._all_replied = asyncio.Event()
        self._refill_at = max(1, min(self.options.batch_size, self.options.max_in_flight // 2))
        #: The claim loop waits for replies or records to free room (not for new rows).
        self._starved = False
        #: Why nothing could be published lately (the worst seen), and the error saying so.
        self._trouble: tuple[Trouble, BaseException] | None = None
        self._outage_pause = OUTAGE_PAUSE_FIRST
        #: The trouble that stopped the relay, raised by run() as RelayStopped.
        self._halted: tuple[Trouble, BaseException] | None = None
        #: Since when claims have failed (monotonic), and the write a ``once`` drain gave up.
        self._claims_failing_since: float | None = None
        self._unwritten: BaseException | None = None
        self._stopped = asyncio.Event()
        self._claims = _DatabaseThread("ensign-claim", self.options.using)
        self._records = _DatabaseThread("ensign-record", self.options.using)
        #: PostgreSQL: claims and acks on the event loop's own connections.
        self._pg: AsyncStatements | None = None
        #: A ``once`` drain's backlog: rows up to this id (None: the table was empty); set
        #: by its first claim. Rows written after it are left to the next run.
        self._backlog_end: int | None = None
        self._backlog_known = False
        #: A ``once`` drain has had a claim with nothing of its backlog: from then on it
        #: claims only with nothing in flight, so it ends however fast rows are written.
        self._past_backlog = False

    # -- control -----------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming; in-flight events finish and are recorded before :meth:`run` returns."""
        self._stopping = True
        self._stopped.set()
        self._wake.set()

    def _wake_up(self) -> None:
        self._wake.set()

    async def run(self) -> RelayStats:
        """Run until :meth:`stop` (or drained, with ``once``); returns what was done.

        Stop it with :meth:`stop`, which finishes what is in flight. Cancelling this
        coroutine is abrupt, as a killed process is: the rows it had claimed wait out
        their lease and are claimed again, an attempt counted. A database other than
        PostgreSQL or SQLite raises :class:`~django_ensign.exceptions.UnsupportedDatabase`
        before anything is claimed.
        """
        databases.require_supported(self.options.using)
        opts = self.options
        self._windows = sendwindows.SendWindows(opts.lease_seconds, opts.publish_timeout)
        if self._client is None:
            self._client = make_client(opts.max_in_flight, opts.publish_timeout, opts.lease_seconds)
        if self._is_postgres():
            from django_ensign import pgasync  # needs psycopg, which SQLite users may lack

            self._pg = await pgasync.AsyncStatements.open(self.options.using)
        helpers = [
            asyncio.create_task(self._record_loop(), name="ensign-relay-recorder"),
            asyncio.create_task(self._renew_loop(), name="ensign-relay-renewer"),
            asyncio.create_task(self._expire_loop(), name="ensign-relay-expiry"),
        ]
        if self.options.listen and not self.options.once and self._is_postgres():
            channel = settings.OUTBOX_NOTIFY_CHANNEL
            helpers.append(
                asyncio.create_task(notify.listen(self.options.using, channel, self._wake_up))
            )
        try:
            try:
                await self._claim_loop()
            except Exception:
                await self._finish()  # record what was published before the error
                raise
            await self._finish()
            if self._unwritten is not None:
                raise self._unwritten
            self._raise_if_stopped_by_trouble()
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            if self._owns_client:
                with contextlib.suppress(Exception):
                    await self._client.close()
            if self._pg is not None:
                await self._pg.close()
            await self._claims.close()
            await self._records.close()
        return self.stats

    def _is_postgres(self) -> bool:
        return bool(connections[self.options.using].vendor == "postgresql")

    # -- claim and publish -----------------------------------------------------------

    async def _claim_loop(self) -> None:
        opts = self.options
        # A claim of ``batch_size`` rows started while the last claim's rows were published.
        ahead: asyncio.Future[list[claims.Claimed]] | None = None
        try:
            while not self._stopping:
                if self._trouble is not None:
                    await self._wait_out_trouble()
                    continue
                claim: Awaitable[list[claims.Claimed]]
                if ahead is not None:
                    claim, limit, ahead = ahead, opts.batch_size, None
                    settled_before = False  # its start came before a claim was published
                else:
                    if self._past_backlog and not self._settled():
                        self._wake.clear()
                        await self._sleep(opts.poll_seconds)
                        continue
                    room = opts.max_in_flight - self._in_flight
                    # A claim of a few rows costs the database nearly what a batch does:
                    # while replies come one at a time (plain framing, a slow server), a
                    # claim on each would claim a row or two at a time, so wait for a batch.
                    if room < self._refill_at or self._unrecorded >= opts.max_in_flight:
                        self._wake.clear()  # replies and the recorder set it when room frees
                        self._starved = True
                        await self._sleep(opts.poll_seconds)
                        self._starved = False
                        continue
                    self._wake.clear()
                    # With ``once``, an empty claim means "drained" only if no outcome was
                    # still unrecorded when it started: those unblock the next rows of
                    # their keys.
                    settled_before = self._settled()
                    limit = min(opts.batch_size, room)
                    claim = self._claim(limit)
                try:
                    rows = await claim
                except DatabaseError as err:
                    now = time.monotonic()
                    since = self._claims_failing_since = self._claims_failing_since or now
                    if opts.once and now - since >= ONCE_DATABASE_PATIENCE:
                        raise  # a drain ends (the Celery task fails) rather than wait for ever
                    logger.warning("outbox claim failed (%s); retrying", err)
                    await self._sleep(opts.poll_seconds)
                    continue
                self._claims_failing_since = None
                if rows:
                    self.stats.claimed += len(rows)
                    beyond = opts.once and not self._holds_backlog(rows)
                    self._past_backlog = self._past_backlog or beyond
                    if len(rows) == limit:
                        ahead = self._claim_ahead(len(rows))
                        if ahead is not None:
                            # Let the claim send its statement now: turning rows into
                            # events does not yield, and a task only runs when we do.
                            await asyncio.sleep(0)
                    await self._publish(rows)
                    if beyond and settled_before:
                        return  # rows written since the drain began are the next run's
                    if len(rows) < limit and not opts.once:
                        # Every due row was taken: the next claim waits for a commit's
                        # NOTIFY, an outcome (the next rows of its keys) or the poll,
                        # rather than running empty and making the next commit wait for it.
                        await self._sleep(opts.poll_seconds)
                    continue
                if opts.once and settled_before:
                    return
                await self._sleep(opts.poll_seconds)
        finally:
            if ahead is not None:
                await self._give_back(ahead)

    def _claim_ahead(self, claimed: int) -> asyncio.Future[list[claims.Claimed]] | None:
        """Start the next claim while ``claimed`` rows are being published, if a batch fits.

        A full claim means more rows are due: the database runs the next one while this
        loop turns the last one into events, instead of each waiting for the other.
        Claims stay one at a time, so per-key order is as with no overlap.
        """
        opts = self.options
        room = opts.max_in_flight - self._in_flight - claimed
        if self._stopping or room < opts.batch_size or self._unrecorded >= opts.max_in_flight:
            return None
        if self._past_backlog:
            return None
        return asyncio.ensure_future(self._claim(opts.batch_size))

    async def _give_back(self, claim: asyncio.Future[list[claims.Claimed]]) -> None:
        """Release the rows of a claim started ahead that will not be published."""
        try:
            rows = await claim
        except Exception as err:  # no rows to give back; what was published still finishes
            logger.warning("outbox claim failed (%s)", err)
            return
        if rows:
            self.stats.claimed += len(rows)
            self._in_flight += len(rows)  # settled at once, as released
            self._release(rows)

    def _settled(self) -> bool:
        """Whether every row this relay claimed has its outcome written back."""
        return self._in_flight == 0 and self._unrecorded == 0

    def _holds_backlog(self, rows: list[claims.Claimed]) -> bool:
        """Whether any of a ``once`` drain's claimed ``rows`` was written before it began."""
        end = self._backlog_end
        return end is not None and any(row.id <= end for row in rows)

    async def _claim(self, limit: int) -> list[claims.Claimed]:
        """Claim up to ``limit`` rows; their leases are renewed from now until recorded."""
        opts = self.options
        if opts.once and not self._backlog_known:
            # Before the first claim, so each row it can take counts as backlog.
            if self._pg is None:
                self._backlog_end = await self._claims.run(claims.newest_id)
            else:
                self._backlog_end = await self._pg.newest_id()
            self._backlog_known = True
        windows = self._windows
        assert windows is not None
        started = windows.clock()  # the lease runs from a moment after this one
        if self._pg is None:
            rows = await self._claims.run(
                claims.claim, limit=limit, lease_seconds=opts.lease_seconds, topics=opts.topics
            )
        else:
            raw = await self._pg.claim(
                limit=limit, lease_seconds=opts.lease_seconds, topics=opts.topics
            )
            rows = [claims.from_row(row) for row in raw]
        # Counted here, not when published: a claim made ahead may wait a while first.
        if rows:
            token = rows[0].token  # a claim's rows share its one token
            self._leases[token] += len(rows)
            windows.open(token, started)
        return rows

    async def _sleep(self, seconds: float) -> None:
        """Until a notification, a recorded outcome, :meth:`stop`, or ``seconds``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _publish(self, rows: list[claims.Claimed]) -> None:
        """Send a claim's rows, per topic a lookup and a ``publish_encoded`` call; outcomes come
        by callback."""
        # Here, not at the top: importing the relay (the Celery task does) loads no grpc.
        from django_ensign.client.events import encode_event, new_local_id

        by_topic: dict[str, list[tuple[claims.Claimed, tuple[bytes, bytes]]]] = {}
        for row in rows:
            self._in_flight += 1
            if row.attempts > self.options.max_attempts:
                # A recorded failure makes a row dead at the limit, so only a claim at the
                # limit that left no outcome (a relay killed, a lease lost) or a lowered
                # limit brings it here.
                failed = claims.Failed(row, _past_limit(row.attempts, self.options), final=True)
                self._settle(failed)
                continue
            try:
                event = (new_local_id(), encode_event(*_event_fields(row)))
            except Exception as err:  # the SDK refuses it: publishing again cannot help
                self._settle(claims.Failed(row, _describe(err), final=_is_final(err)))
                continue
            by_topic.setdefault(row.topic, []).append((row, event))
        windows = self._windows
        assert windows is not None
        for topic, items in by_topic.items():
            unsent = [row for row, _ in items]
            if not self._stopping:
                try:
                    # With no events this only looks the topic up (or creates it), so a slow
                    # first lookup does not run down the deadline below and publish twice.
                    await self._client.publish_encoded(
                        topic, [], ensure_exists=self.options.create_topics
                    )
                except Exception as err:
                    self._fail(unsent, err)
                    continue
            if self._stopping:  # also when stop() came during the lookup
                self._release(unsent)
                continue
            # The client's own deadline (the same timeout) comes first and says whether the
            # server was reachable meanwhile; this one is the backstop.
            deadline = time.monotonic() + self.options.publish_timeout + EXPIRY_GRACE
            for row, (local_id, _) in items:
                self._pending[local_id] = (row, deadline)
            try:
                send_by = windows.deadline(items[0][0].token)  # a claim's rows share it
                await self._client.publish_encoded(
                    topic,
                    [event for _, event in items],
                    on_ack=self._on_ack,
                    on_nack=self._on_nack,
                    ensure_exists=self.options.create_topics,
                    send_by=send_by,
                )
            except Exception as err:  # retried with backoff, or dead if it can never work
                unsent = [row for row, (local_id, _) in items if self._pending.pop(local_id, None)]
                self._fail(unsent, err)

    def _fail(self, rows: list[claims.Claimed], err: BaseException) -> None:
        """Settle rows whose publish call raised ``err``: counted, or given back if not theirs."""
        if not rows:
            return
        if self._gave_back(rows, err):
            return
        logger.warning(
            "publishing %d outbox events to %s failed (%s); they will be retried",
            len(rows),
            rows[0].topic,
            _describe(err),
        )
        for row in rows:
            self._settle(claims.Failed(row, _describe(err), final=_is_final(err)))

    def _gave_back(self, rows: list[claims.Claimed], err: BaseException | None) -> bool:
        """Give ``rows`` back uncounted if ``err`` is no fault of theirs (see publishfailures)."""
        kind = trouble(err)
        if kind is None or err is None:
            return False
        if self._trouble is None or kind is Trouble.REFUSED:
            self._trouble = (kind, err)
        self._release(rows)
        return True

    async def _wait_out_trouble(self) -> None:
        """Pause claiming while Ensign is unreachable; stop when it refuses the relay."""
        waited_out = self._trouble
        assert waited_out is not None
        kind, err = waited_out
        if kind is Trouble.REFUSED or self.options.once:
            self._halted = waited_out  # raised by run() once in-flight events finish
            self._stopping = True
            return
        logger.warning(
            "Ensign could not be reached (%s); claiming again in %.1f s",
            _describe(err),
            self._outage_pause,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), self._outage_pause)
        self._outage_pause = min(self._outage_pause * 2, OUTAGE_PAUSE_MAX)
        # A refusal seen during the pause (a publish still in flight) replaced the outage
        # and must stop the relay on the next turn, not be forgotten with it.
        if self._trouble is waited_out:
            self._trouble = None

    def _raise_if_stopped_by_trouble(self) -> None:
        if self._halted is None:
            return
        kind, err = self._halted
        if kind is Trouble.REFUSED:
            raise exceptions.RelayStopped(
                f"Ensign refused the relay ({_describe(err)}): check ENSIGN_CLIENT_ID, "
                "ENSIGN_CLIENT_SECRET and the API key's publisher permission. The outbox rows "
                "wait, no attempt counted.",
                stats=self.stats,
                refused=True,
            ) from err
        raise exceptions.RelayStopped(
            f"Ensign could not be reached ({_describe(err)}). The outbox rows wait for the "
            "next run, no attempt counted.",
            stats=self.stats,
        ) from err

    def _on_ack(self, ack: Any) -> None:
        found = self._pending.pop(ack.id, None)
        if found is not None:  # else: a late reply for an event this relay gave up on
            self._settle(claims.Acked(found[0], self._committed_at(ack.committed)))
            self._outage_pause = OUTAGE_PAUSE_FIRST

    def _committed_at(self, stamp: Any) -> dt.datetime | None:
        """The datetime of an Ack's commit time; the events of one commit share it.

        None, so the database's clock stands in, for an Ack without one (protobuf reads an
        unset time as the epoch, which would make the row prunable at once) or with one a
        datetime cannot hold (raising here would leave the row in flight for good).
        """
        key = (stamp.seconds, stamp.nanos)
        if key != self._last_commit[0]:
            from django_ensign.client.events import timestamp_to_datetime

            when: dt.datetime | None = None
            if key != (0, 0):
                with contextlib.suppress(OverflowError, ValueError, OSError):
                    when = timestamp_to_datetime(stamp)
            self._last_commit = (key, when)
        return self._last_commit[1]

    def _on_nack(self, nack: Any) -> None:
        found = self._pending.pop(nack.id, None)
        if found is None:
            return
        # A Nack the client made for an event it could not send carries the error; its
        # code is the client's, so the row records no server nack code.
        cause = getattr(nack, "cause", None)
        if cause is not None and _not_sent_in_time(cause):
            self._not_sent_in_lease(found[0])
            return
        if self._gave_back([found[0]], cause):
            return
        if cause is not None:
            self._settle(claims.Failed(found[0], _describe(cause), final=_is_final(cause)))
        else:
            self._settle(claims.Failed(found[0], nack.error or "nacked", int(nack.code)))

    def _not_sent_in_lease(self, row: claims.Claimed) -> None:
        """Settle a row whose event was still unsent at its send deadline: given back if its
        lease may have lapsed, failed (an attempt counted) if the publish timeout passed."""
        assert self._windows is not None
        if self._windows.lease_certain(row.token):
            timeout = self.options.publish_timeout
            why = f"not sent, or not sent again, within {timeout} seconds"
            self._settle(claims.Failed(row, why))
            return
        if row.token not in self._lapsed:
            self._lapsed.add(row.token)
            logger.warning(
                "outbox leases could not be renewed for %.0f s: events of rows claimed under "
                "them that were waiting to be sent (or sent again) are not sent now, as their "
                "rows may be another relay's already; the rows are claimed again",
                self.options.lease_seconds * sendwindows.SEND_SHARE_OF_LEASE,
            )
        self._release([row])

    def _expire(self) -> None:
        """Count events with no reply after ``publish_timeout`` as failed (they retry)."""
        now = time.monotonic()
        expired = []
        for local_id, (row, deadline) in self._pending.items():
            if deadline > now:
                break  # insertion order is deadline order
            expired.append((local_id, row))
        for local_id, row in expired:
            del self._pending[local_id]
            timeout = self.options.publish_timeout
            self._settle(claims.Failed(row, f"no ack or nack within {timeout} seconds"))

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.options.publish_timeout / 4))
            self._expire()

    def _settle(self, outcome: claims.Outcome) -> None:
        self._outcomes.append(outcome)
        self._outcome_ready.set()
        self._in_flight -= 1
        self._unrecorded += 1
        # Claiming again as soon as ``_refill_at`` rows of room are free keeps the pipeline
        # full while the outcomes are written back, without a claim per reply when replies
        # come singly.
        if self._starved and self.options.max_in_flight - self._in_flight >= self._refill_at:
            self._wake.set()
        if not self._pending:
            self._all_replied.set()

    def _release(self, rows: Iterable[claims.Claimed]) -> None:
        """Settle in-flight ``rows`` as not sent: the recorder gives them back uncounted."""
        for row in rows:
            self._settle(claims.Released(row))

    def _forget_leases(self, rows: Iterable[claims.Claimed]) -> None:
        """Stop renewing the leases of ``rows`` once no other row of theirs is unrecorded."""
        leases = self._leases
        for token, count in identity_runs(row.token for row in rows):
            leases[token] -= count
            if leases[token] <= 0:
                del leases[token]
                if self._windows is not None:
                    self._windows.close(token)
                self._lapsed.discard(token)

    # -- record ----------------------------------------------------------------------

    async def _record_loop(self) -> None:
        while True:
            await self._outcome_ready.wait()
            if len(self._outcomes) < self._refill_at and not self._stopping:
                # Replies that come one per message (plain framing, a slow trickle) would
                # otherwise cost a statement each; a few milliseconds gather them.
                await asyncio.sleep(RECORD_LINGER)
            await self._record_pending()

    async def _record_pending(self) -> None:
        # One write at a time: the final flush of a stopping relay waits for the recorder's
        # write in progress, which the shutdown would otherwise cancel halfway.
        async with self._recording:
            await self._record_taken()

    async def _record_taken(self) -> None:
        self._outcome_ready.clear()
        batch, self._outcomes = self._outcomes, []
        if not batch:
            return
        opts = self.options
        failing_since = None
        while True:
            try:
                result = await self._record(batch)
                break
            except Exception as err:  # keep the outcomes; the leases are renewed meanwhile
                failing_since = failing_since or time.monotonic()
                patience_gone = time.monotonic() - failing_since >= ONCE_DATABASE_PATIENCE
                # A stopping relay gives up too: SIGTERM must end it while the database
                # is out, and its rows come back when their leases lapse.
                ending = opts.once or self._stopping
                if ending and (patience_gone or self._unwritten is not None):
                    self._give_up_recording(batch, err)
                    return
                logger.warning(
                    "recording %d outbox outcomes failed (%s); retrying", len(batch), err
                )
                await asyncio.sleep(min(opts.poll_seconds, 1.0))
        self.stats.acked += result.acked
        self.stats.retrying += result.retrying
        self.stats.dead += result.dead
        self.stats.released += result.released
        self.stats.stale += result.stale
        if result.dead:
            logger.error("%d outbox events are dead: ids %s", result.dead, result.dead_ids[:20])
        self._unrecorded -= len(batch)
        self._forget_leases(outcome.row for outcome in batch)
        # Room again, the next rows of these keys are claimable now, or (``once``) the last
        # outcome is written and the next claim can tell that the drain is done.
        settled = self.options.once and self._settled()
        if self._starved or settled or any(outcome.row.ordering_key for outcome in batch):
            self._wake.set()

    def _give_up_recording(self, batch: list[claims.Outcome], err: BaseException) -> None:
        """A drain's or a stopping relay's last resort: leave ``batch`` unwritten, and fail."""
        logger.error(
            "recording %d outbox outcomes keeps failing (%s); the drain gives up: their rows "
            "are claimed again once their leases lapse, and events already sent go out again",
            len(batch),
            err,
        )
        self._unrecorded -= len(batch)
        self._forget_leases(outcome.row for outcome in batch)
        self._unwritten = self._unwritten or err
        self.stop()  # claiming more would only publish more that cannot be recorded

    async def _record(self, batch: list[claims.Outcome]) -> claims.Recorded:
        """Write ``batch`` back: acks straight from the loop on PostgreSQL, the rest in a thread."""
        acks = [o for o in batch if isinstance(o, claims.Acked)] if self._pg is not None else []
        rest = [o for o in batch if not isinstance(o, claims.Acked)] if acks else batch
        result = claims.Recorded()
        if rest:
            opts = self.options
            result = await self._records.run(
                claims.record,
                outcomes=rest,
                max_attempts=opts.max_attempts,
                backoff_base=opts.backoff_base,
                backoff_max=opts.backoff_max,
            )
        if acks and self._pg is not None:
            acked = await self._pg.record_acks(
                [(o.row.id, o.row.token, o.committed_at) for o in acks]
            )
            result.acked += acked
            result.stale += len(acks) - acked
        return result

    async def _renew_loop(self) -> None:
        windows = self._windows
        assert windows is not None
        every = max(self.options.lease_seconds / 3, 0.05)
        while True:
            await asyncio.sleep(every)
            if not self._leases:
                continue
            started = windows.clock()
            tokens = list(self._leases)
            try:
                # Not on the recorder's thread: a write stuck there must not let leases lapse
                # (and another relay publish the same rows). PostgreSQL relays claim on the
                # event loop, so this thread is otherwise idle there.
                await self._claims.run(
                    claims.renew, tokens=tokens, lease_seconds=self.options.lease_seconds
                )
            except DatabaseError as err:
                logger.warning("renewing outbox leases failed (%s)", err)
                continue
            windows.renewed(tokens, started)

    async def _finish(self) -> None:
        """Wait for every published event's outcome (or its deadline) and record it."""
        while self._pending:
            self._all_replied.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_replied.wait(), 1.0)
            self._expire()
        await self._record_pending()


def _event_fields(row: claims.Claimed) -> tuple[bytes, str, str, str, dict[str, str]]:
    """``encode_event``'s arguments for a row: its stable id and ordering key go in metadata."""
    meta = row.metadata
    meta[metadata.STABLE_ID_KEY] = row.event_id
    if row.ordering_key:
        meta[metadata.ORDERING_KEY] = row.ordering_key
    return row.data, row.mimetype, row.type_name or "Unknown", row.type_version or "0.0.0", meta


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


def _past_limit(attempt: int, options: RelayOptions) -> str:
    return (
        f"claimed for attempt {attempt}, past the limit of {options.max_attempts}, with no "
        "outcome recorded for the last (a relay killed or a lease lost), or the limit was lowered"
    )


def _not_sent_in_time(err: BaseException) -> bool:
    """Whether the client left an event unsent because its send deadline passed."""
    from django_ensign.client import exceptions as sdk

    return isinstance(err, sdk.SendDeadlinePassed)


def _is_final(err: BaseException) -> bool:
    """Events the SDK refuses before sending (bad data, bad topic name) can never succeed."""
    from django_ensign.client import exceptions as sdk

    return isinstance(err, sdk.InvalidEvent | sdk.EventDataTypeError | sdk.InvalidTopicName)


def run(options: RelayOptions, *, client: Any = None, handle_signals: bool = True) -> RelayStats:
    """Run a relay in a new event loop; SIGTERM and SIGINT stop it gracefully."""

    async def main() -> RelayStats:
        relay = Relay(options, client=client)
        if handle_signals and threading.current_thread() is threading.main_thread():
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, relay.stop)
        return await relay.run()

    return asyncio.run(main())

"""The subscriber: an asyncio loop that feeds delivered events to their handlers.

It subscribes (in a consumer group by default, so a restart resumes after the
last acked event), runs each event's handlers in a worker thread through
:mod:`django_ensign.dispatch`, and acks an event only once every handler's
transaction has committed or the event is dead-lettered. A failing handler is
retried with backoff while its event is held; on stop the subscriber takes no
new events, finishes the ones in hand, acks them and returns.

In Celery mode each event is handed to :func:`django_ensign.tasks.handle_event`
instead, and acked once the broker has accepted the task.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import contextvars
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from asgiref.sync import sync_to_async
from django.db import connections as db_connections

from django_ensign import databases, dispatch, exceptions
from django_ensign.conf import settings
from django_ensign.handlers import Handler, InboundEvent
from django_ensign.sdkclient import client_from_settings
from django_ensign.wire import ids, mimetypes
from django_ensign.wire.metadata import ORDERING_KEY, STABLE_ID_KEY

if TYPE_CHECKING:
    from django_ensign.client.subscriber import Start

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Nack codes of the Ensign protocol a subscriber sends (PROTOCOL.md §4).
NACK_UNPROCESSED = 100
NACK_DELIVER_AGAIN_ANY = 104
#: Why a stopping subscriber gives back an event whose key it cannot apply in order.
HELD_BACK = "subscriber stopping; an earlier event of its ordering key was not settled"
#: Default window: events delivered and not yet acked, per concurrent slot.
WINDOW_PER_SLOT = 64
#: Most events handled in one database transaction (and held waiting for a thread).
MAX_BATCH = 200
#: Seconds between two progress lines at verbosity 1.
PROGRESS_SECONDS = 10.0

#: Errors that retrying cannot fix: the run ends with them.
_FATAL = (
    exceptions.ConfigurationError,
    exceptions.AuthenticationError,
    exceptions.PermissionDenied,
    exceptions.InvalidArgument,
)


def _reason(exc: Exception, topics: tuple[str, ...]) -> str:
    """Why a subscription failed, in the user's terms where the server's are obscure."""
    if isinstance(exc, exceptions.FailedPrecondition) and "no topics" in str(exc):
        # The server's words when none of the names matches one of its topics.
        names = ", ".join(repr(topic) for topic in topics)
        return f"no topic {names} exists on the server yet: check the name, or publish to it"
    return str(exc)


Reporter = Callable[[str, int], None]
"""Called with a progress line and the Django verbosity it belongs to (1, 2 or 3)."""


@dataclass
class Stats:
    """What one run did."""

    received: int = 0
    handled: int = 0
    duplicates: int = 0
    dead: int = 0
    retries: int = 0
    queued: int = 0
    nacked: int = 0

    def summary(self) -> str:
        """The counts as one line."""
        return (
            f"received {self.received}, handled {self.handled}, duplicates {self.duplicates}, "
            f"retries {self.retries}, dead {self.dead}, queued {self.queued}, "
            f"nacked {self.nacked}"
        )


@dataclass
class SubscriberOptions:
    """How to subscribe; unset values come from the ``ENSIGN_SUBSCRIBER_*`` settings."""

    topics: tuple[str, ...]
    group: str | None = field(default_factory=lambda: settings.SUBSCRIBER_GROUP)
    #: With a group: where it begins on a topic it has no position on yet (a position
    #: always wins). Without one: replay stored events first, or only new ones.
    start: Start = "earliest"
    concurrency: int = field(default_factory=lambda: settings.SUBSCRIBER_CONCURRENCY)
    celery: bool = False
    batch_size: int | None = field(default_factory=lambda: settings.SUBSCRIBER_BATCH_SIZE)
    max_attempts: int = field(default_factory=lambda: settings.SUBSCRIBER_MAX_ATTEMPTS)
    window: int | None = field(default_factory=lambda: settings.SUBSCRIBER_WINDOW)

    def effective_window(self) -> int:
        """The window asked of the server: the setting, else 64 events per concurrent slot.

        With batches, at least two of them: the server fills the next one while the
        handlers apply this one (with one, each waits for the other's acks).
        """
        if self.window is not None:
            return max(0, self.window)
        return max(WINDOW_PER_SLOT * max(1, self.concurrency), 2 * (self.batch_size or 0))


def make_client() -> Any:
    """An SDK client configured from the ``ENSIGN_*`` settings."""
    return client_from_settings()


def inbound_from(received: Any) -> InboundEvent:
    """The handler-facing event of an SDK ``ReceivedEvent``."""
    server_id = (
        ids.rlid_to_str(received.id) if len(received.id) == ids.RLID_BYTES else received.id.hex()
    )
    meta = {str(k): str(v) for k, v in dict(received.meta).items()}
    mimetype = received.mimetype
    if isinstance(mimetype, int):
        mimetype = mimetypes.name(mimetype)
    undecodable = getattr(received, "decode_error", None)
    return InboundEvent(
        topic=str(received.topic),
        # Cut to the inbox's key, so handlers see the id a replay will give them.
        event_id=dispatch.storable_id(meta.get(STABLE_ID_KEY) or server_id),
        data=bytes(received.raw if undecodable else received.data),
        mimetype=str(mimetype),
        metadata=meta,
        type_name=str(received.type_name or ""),
        type_version=str(received.type_version or ""),
        committed_at=received.committed_at,
        server_id=server_id,
        offset=getattr(received, "offset", None),
        decode_error=str(undecodable or ""),
    )


def _ordering_key(received: Any) -> str:
    """The event's ordering key ("" if none): events of one key are handled in order."""
    return str(received.meta.get(ORDERING_KEY, ""))


class Subscriber:
    """One subscriber process's loop; :meth:`run` until :meth:`stop` is called."""

    def __init__(
        self,
        options: SubscriberOptions,
        *,
        report: Reporter | None = None,
        client_factory: Callable[[], Any] = make_client,
        on_settled: Callable[[Any], None] | None = None,
        verbosity: int = 3,
    ) -> None:
        """``on_settled`` is called with each SDK event once it is acked (tests, metrics).

        ``report`` gets the lines of levels up to ``verbosity`` only.
        """
        if not options.topics:
            raise exceptions.ConfigurationError("subscribe to at least one topic")
        self.options = options
        self.stats = Stats()
        self._report = report or (lambda message, level: log.info(message))
        # Per-event lines are not even formatted when nobody reads them: at thousands of
        # events a second the formatting is a measurable share of the loop's time.
        self._verbosity = verbosity
        self._client_factory = client_factory
        self._on_settled = on_settled
        self._stop = asyncio.Event()
        self._current: contextvars.ContextVar[concurrent.futures.ThreadPoolExecutor] = (
            contextvars.ContextVar("ensign_handler_thread")
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._subscriptions: set[Any] = set()
        self._key_tails: dict[str, asyncio.Task[None]] = {}
        # Ordering keys whose event was nacked, not settled, while stopping: their later
        # events are nacked too, so a redelivery applies the key in order. Only kept while
        # stopping, so it cannot grow over a long run.
        self._unsettled_keys: set[str] = set()
        # One thread per slot, each keeping its own database connection; a batch of
        # events holds a slot from hand-over to ack, so concurrency bounds the batches
        # in hand and MAX_BATCH their size.
        self._threads = [
            concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"ensign-handler-{n}")
            for n in range(max(1, options.concurrency))
        ]
        self._idle = list(self._threads)
        self._applying = 0  # batches in their one-transaction try
        self._share = max(1, MAX_BATCH // len(self._threads))
        self._hand: collections.deque[Any] = collections.deque()
        self._room = asyncio.Event()

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stop.is_set()

    def stop(self) -> None:
        """Take no new events; :meth:`run` returns once the events in hand are settled."""
        self._stop.set()

    async def run(self) -> Stats:
        """Subscribe and handle events until stopped; returns the counts.

        Raises :class:`~django_ensign.exceptions.UnsupportedDatabase` before subscribing
        when the inbox's database is neither PostgreSQL nor SQLite.
        """
        databases.require_supported(dispatch.inbox_alias())
        client = self._client_factory()
        readers = [
            asyncio.create_task(self._read(client, topics, query)) for topics, query in self._plan()
        ]
        stopper = asyncio.create_task(self._stop.wait())
        ticker = asyncio.create_task(self._progress())
        try:
            self._report(
                f"Subscribing to {', '.join(self.options.topics)}"
                + (f" in group {self.options.group!r}" if self.options.group else "")
                + (" (handing events to Celery)" if self.options.celery else ""),
                1,
            )
            await asyncio.wait([*readers, stopper], return_when=asyncio.FIRST_COMPLETED)
            self._stop.set()
            await self._drain()
        finally:
            stopper.cancel()
            ticker.cancel()
            # Closing sends the acks still buffered, then ends the streams; only then
            # are the readers cancelled (cancelling a pending read cancels the call).
            for sub in list(self._subscriptions):
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await sub.close()
            for reader in readers:
                reader.cancel()
            for reader in readers:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader
            with contextlib.suppress(Exception):
                await client.close()
            await self._close_threads()
        for reader in readers:
            if reader.done() and not reader.cancelled() and reader.exception() is not None:
                raise reader.exception()  # type: ignore[misc]
        return self.stats

    async def _progress(self) -> None:
        """A line of counts at verbosity 1 every PROGRESS_SECONDS while events arrive."""
        shown = -1
        while True:
            await asyncio.sleep(PROGRESS_SECONDS)
            if self.stats.received != shown:
                shown = self.stats.received
                self._report(f"Progress: {self.stats.summary()}", 1)

    def _plan(self) -> list[tuple[tuple[str, ...], str | None]]:
        """(topics, query) per subscription: one with a group, one per topic for a replay."""
        if self.options.group or self.options.start == "latest":
            return [(self.options.topics, None)]
        return [((topic,), f"SELECT * FROM {topic}") for topic in self.options.topics]

    def _subscribe(self, client: Any, topics: tuple[str, ...], query: str | None) -> Any:
        kwargs: dict[str, Any] = {}
        if self.options.group:
            kwargs["consumer_group"] = self.options.group
            kwargs["start"] = self.options.start
        if query:
            kwargs["query"] = query
        if self.options.batch_size is not None:
            kwargs["batch_size"] = self.options.batch_size
        if self.options.effective_window():
            kwargs["window"] = self.options.effective_window()
        return client.subscribe(*topics, **kwargs)

    async def _close_threads(self) -> None:
        loop = asyncio.get_running_loop()
        for thread in self._threads:
            with contextlib.suppress(Exception):
                await loop.run_in_executor(thread, db_connections.close_all)
            thread.shutdown(wait=False, cancel_futures=True)

    async def _drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _read(self, client: Any, topics: tuple[str, ...], query: str | None) -> None:
        """Subscribe and take events until stopped, subscribing again after failures.

        The SDK already reopens broken streams; this also outlasts a server that is
        down at start or a topic that does not exist yet. Configuration and
        permission errors end the run.
        """
        delay = 0.1
        while not self.stopping:
            subscription = self._subscribe(client, topics, query)
            self._subscriptions.add(subscription)
            try:
                await subscription.open()
                self._report(f"Subscribed to {', '.join(topics)}", 2)
                self._report_missing(topics, subscription)
                delay = 0.1
                await self._take(subscription)
            except exceptions.EnsignError as exc:
                # An unreachable auth service is often the server restarting (the
                # embedded one serves auth too): wait it out like any outage.
                if isinstance(exc, _FATAL) and not isinstance(
                    exc, exceptions.AuthServiceUnreachable
                ):
                    raise
                if self.stopping:
                    return
                self._report(
                    f"Subscription to {', '.join(topics)} failed ({_reason(exc, topics)}); "
                    "retrying",
                    1,
                )
            finally:
                if not self.stopping:  # when stopping, run() closes it once the acks are out
                    self._subscriptions.discard(subscription)
                    with contextlib.suppress(Exception):
                        await subscription.close()
            if self.stopping:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            delay = min(delay * 2, settings.SUBSCRIBER_RECONNECT_MAX)

    def _report_missing(self, topics: tuple[str, ...], subscription: Any) -> None:
        """Name the asked-for topics the server does not have: it leaves them out silently."""
        opened = getattr(subscription, "topics", None)
        if not isinstance(opened, dict):
            return
        for topic in topics:
            if topic not in opened:
                self._report(
                    f"Topic {topic!r} does not exist on the server yet: its handlers get no "
                    "events until it is created (is the name right?)",
                    1,
                )

    async def _take(self, subscription: Any) -> None:
        # Once stopping, events still arriving, and those in hand not yet given to a
        # thread, are left unacked rather than nacked: a nack would have the server send
        # them straight back to this stream until it closes; unacked, they go back to the
        # group when the stream ends. Events in hand from a stream that broke are still
        # handled: a redelivered copy is then a duplicate, skipped by the inbox.
        async for received in subscription:
            if self.stopping:
                return
            self._hand.append(received)
            self._dispatch()
            while len(self._hand) >= MAX_BATCH and not self.stopping:
                self._room.clear()
                await self._room.wait()

    def _dispatch(self) -> None:
        """Give the events in hand to idle threads, at most MAX_BATCH to each.

        Called when an event arrives, when a batch's transaction ends and when a thread
        comes free, so nothing waits for a batch to fill. While a batch is being
        applied, events arriving meanwhile wait for it to end and then go together,
        unless a thread's share of MAX_BATCH is in hand already: a few larger
        transactions cost far less per event than many of one or two events each.
        """
        while self._hand and self._idle and not self.stopping:
            if self._applying and len(self._hand) < self._share:
                break
            take = min(len(self._hand), MAX_BATCH)
            batch = [self._hand.popleft() for _ in range(take)]
            self.stats.received += take
            self._spawn(batch, self._idle.pop())
        if len(self._hand) < MAX_BATCH:
            self._room.set()

    def _spawn(self, batch: list[Any], thread: concurrent.futures.ThreadPoolExecutor) -> None:
        keys = [key for key in (_ordering_key(received) for received in batch) if key]
        before = {self._key_tails[key] for key in keys if key in self._key_tails}
        task = asyncio.create_task(self._settle_batch(batch, thread, before))
        self._tasks.add(task)
        for key in keys:
            self._key_tails[key] = task

        def done(finished: asyncio.Task[None]) -> None:
            self._tasks.discard(finished)
            for key in keys:
                if self._key_tails.get(key) is finished:
                    del self._key_tails[key]
            self._idle.append(thread)
            self._dispatch()

        task.add_done_callback(done)

    async def _settle_batch(
        self,
        batch: list[Any],
        thread: concurrent.futures.ThreadPoolExecutor,
        before: set[asyncio.Task[None]],
    ) -> None:
        """Settle events taken together: one transaction if all goes well, else one each."""
        for earlier in before:
            # Events of one ordering key are handled in delivery order.
            with contextlib.suppress(BaseException):
                await asyncio.shield(earlier)
        batch = await self._hold_back_keys_left_unsettled(batch)
        self._current.set(thread)
        if not self.options.celery:
            self._applying += 1
            try:
                batch = await self._handle_together(batch)
            finally:
                self._applying -= 1
                self._dispatch()
        # One at a time (each in its own transaction, with its own retries); events of one
        # ordering key still go in delivery order.
        tails: dict[str, asyncio.Task[None]] = {}
        singles = []
        for received in batch:
            key = _ordering_key(received)
            single = asyncio.create_task(self._settle(received, tails.get(key)))
            singles.append(single)
            if key:
                tails[key] = single
        await asyncio.gather(*singles, return_exceptions=True)

    async def _handle_together(self, batch: list[Any]) -> list[Any]:
        """Apply ``batch`` in one transaction and ack it; returns what must go one by one.

        That is all of it but the events dead-lettered at once when a handler raised:
        nothing was applied then.
        """
        work: list[tuple[InboundEvent, list[Handler]]] = []
        taken: list[Any] = []
        try:
            for received in batch:
                event = inbound_from(received)
                routed = await self._route(event)
                if routed is None:  # dead-lettered at once: acked like a handled event
                    await self._ack(received)
                else:
                    work.append((event, routed))
                    taken.append(received)
            if not work:
                return []
            results = await self._db(dispatch.attempt_batch, work)
        except Exception:
            log.exception("could not handle %d events together", len(batch))
            return [received for received in batch if not received.acked()]
        if results is None:
            return taken
        for (event, _), outcome in zip(work, results, strict=True):
            self._count(event, outcome, [])
        for received in taken:
            await self._ack(received)
        return []

    async def _hold_back_keys_left_unsettled(self, batch: list[Any]) -> list[Any]:
        """``batch`` less the events nacked because an earlier one of their key was."""
        if not (self.stopping and self._unsettled_keys):
            return batch
        return [received for received in batch if not await self._held_back(received)]

    async def _held_back(self, received: Any) -> bool:
        """While stopping, nack ``received`` if an earlier event of its key was not settled."""
        key = _ordering_key(received)
        if not (key and self.stopping and key in self._unsettled_keys):
            return False
        await self._nack(received, NACK_DELIVER_AGAIN_ANY, HELD_BACK)
        return True

    async def _ack(self, received: Any) -> None:
        if self._unsettled_keys:
            self._unsettled_keys.discard(_ordering_key(received))
        with contextlib.suppress(Exception):
            await received.ack()
        if self._on_settled is not None:
            self._on_settled(received)

    async def _settle(self, received: Any, before: asyncio.Task[None] | None) -> None:
        """Handle one event and ack it, or nack it if it could not be settled."""
        if before is not None:
            with contextlib.suppress(BaseException):
                await asyncio.shield(before)
        if await self._held_back(received):
            return
        key = _ordering_key(received)
        try:
            event = inbound_from(received)
            settled = await (
                self._enqueue(event, received)
                if self.options.celery
                else self._handle(event, received)
            )
        except Exception as exc:
            log.exception("could not settle event %r", getattr(received, "id", b""))
            if key and self.stopping:
                self._unsettled_keys.add(key)
            await self._nack(received, NACK_UNPROCESSED, f"{type(exc).__name__}: {exc}"[:1000])
            return
        if settled:
            await self._ack(received)
        else:
            if key:
                self._unsettled_keys.add(key)
            await self._nack(received, NACK_DELIVER_AGAIN_ANY, "subscriber stopping during retries")

    async def _nack(self, received: Any, code: int, error: str) -> None:
        self.stats.nacked += 1
        with contextlib.suppress(Exception):
            await received.nack(code, error)

    async def _db(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``func`` in the thread of the event this task holds."""
        call = sync_to_async(func, thread_sensitive=False, executor=self._current.get())
        return await call(*args, **kwargs)

    async def _route(self, event: InboundEvent) -> list[Handler] | None:
        """The handlers of ``event``, or None once an event none can take is dead-lettered."""
        try:
            return dispatch.plan(event)
        except exceptions.DeadLetterNow as error:
            await self._db(dispatch.dead_letter_unplannable, event, error)
            self.stats.dead += 1
            self._report(f"Dead-lettered {event.topic} {event.event_id}: {error}", 1)
            return None

    async def _handle(self, event: InboundEvent, received: Any) -> bool:
        """Run the handlers with retries; True once settled (handled or dead-lettered)."""
        routed = await self._route(event)
        if routed is None:
            return True
        pending = routed
        limit = max(1, self.options.max_attempts)
        for number in range(1, limit + 1):
            final = number == limit
            results, pending = await self._db(
                dispatch.attempt_and_settle, event, pending, attempt_number=number, final=final
            )
            self._count(event, results, pending)
            if not pending:
                return True
            self.stats.retries += 1
            delay = dispatch.backoff(number)
            self._report(
                f"Retrying {event.topic} {event.event_id} in {delay:.2f}s "
                f"({', '.join(h.name for h in pending)} failed, attempt {number}/{limit})",
                2,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            if self.stopping:
                return False
        return True

    def _count(
        self,
        event: InboundEvent,
        results: list[dispatch.HandlerResult],
        pending: list[Handler],
    ) -> None:
        retrying = {h.name for h in pending}
        for result in results:
            name = result.handler.name
            if result.outcome is dispatch.Outcome.HANDLED:
                self.stats.handled += 1
                if self._verbosity >= 2:
                    self._report(f"Handled {event.topic} {event.event_id} with {name}", 2)
            elif result.outcome is dispatch.Outcome.DUPLICATE:
                self.stats.duplicates += 1
                if self._verbosity >= 3:
                    self._report(
                        f"Skipped {event.topic} {event.event_id} for {name}: already handled", 3
                    )
            elif name not in retrying:
                self.stats.dead += 1
                self._report(
                    f"Dead-lettered {event.topic} {event.event_id} for {name}: {result.error}", 1
                )

    async def _enqueue(self, event: InboundEvent, received: Any) -> bool:
        """Hand the event to Celery; True once the broker accepted the task."""
        if await self._route(event) is None:
            return True
        from django_ensign import tasks

        await self._db(tasks.enqueue_event, event)
        self.stats.queued += 1
        if self._verbosity >= 2:
            self._report(f"Queued {event.topic} {event.event_id} for Celery", 2)
        return True


def run(
    options: SubscriberOptions,
    *,
    report: Reporter | None = None,
    handle_signals: bool = True,
    verbosity: int = 3,
) -> Stats:
    """Run a subscriber until SIGTERM or SIGINT (when ``handle_signals``); returns its counts."""
    import signal

    async def main() -> Stats:
        subscriber = Subscriber(options, report=report, verbosity=verbosity)
        if handle_signals:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, subscriber.stop)
        return await subscriber.run()

    return asyncio.run(main())

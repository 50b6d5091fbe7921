"""One publish stream per event loop: bounded in-flight window, batching, reconnect and resend.

Every event stays in ``_inflight`` (its local id mapped to its queue entry: one event, or a
batch of encoded events) from ``publish()`` until its Ack or Nack arrives or its deadline
passes. When a stream breaks, every event sent on
it that has no outcome goes back to the front of the send queue and is sent again on
the next stream; a late duplicate outcome finds nothing in ``_inflight`` and is ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterable
from dataclasses import dataclass, field
from types import CoroutineType
from typing import Any

import grpc
import grpc.aio

from django_ensign.client import deadline as send_deadline
from django_ensign.client import exceptions, framing, handshake
from django_ensign.client.connection import EOF, Connection
from django_ensign.client.deadline import SendDeadline
from django_ensign.client.errors import describe_error, is_retryable, translate
from django_ensign.client.events import Ack, Event, EventState, Nack, NackCode, Outcome
from django_ensign.client.topics import TopicCache
from django_ensign.proto.api.v1beta1 import ensign_pb2

logger = logging.getLogger(__name__)

Callback = Callable[[Any], Any]

# Used when the server advertises the batch extension without limits.
DEFAULT_BATCH_EVENTS = 1000
DEFAULT_BATCH_BYTES = 4 * 1024 * 1024
# Queued events after which publish() yields to the writer (plain framing, batches).
SEND_CHUNK = 64
SEND_CHUNK_BATCHED = 512
#: Why publish_encoded refuses ids: one id for two events in flight would let the first
#: outcome settle the wrong one.
_ID_IN_USE = "local ids must be unique among events in flight"
#: Seconds the end of an event loop waits for on_nack coroutines of the events it fails.
LOOP_END_GRACE = 5.0


class _Pending:
    __slots__ = (
        "deadline",
        "done",
        "event",
        "frame",
        "local_id",
        "on_ack",
        "on_nack",
        "send_by",
        "stream",
        "topic_id",
    )

    def __init__(
        self,
        event: Event,
        local_id: bytes,
        topic_id: bytes,
        frame: bytes,
        deadline: float,
        on_ack: Callback | None,
        on_nack: Callback | None,
        send_by: SendDeadline | None = None,
    ) -> None:
        self.event = event
        self.local_id = local_id
        self.topic_id = topic_id
        #: The event as a plain-framing request, which is also its batch entry as is.
        self.frame = frame
        self.deadline = deadline
        self.on_ack = on_ack
        self.on_nack = on_nack
        self.send_by = send_by
        self.stream: _Stream | None = None
        self.done = False

    def finish(self) -> None:
        """Mark the event done and let its frame go (see :meth:`_Batch.finish`)."""
        self.done = True
        self.frame = b""


class _Batch:
    """The events of one ``publish_encoded`` chunk: one entry in the queue and the deadlines.

    ``frames[i]`` carries the event ``ids[i]``. Requests take them in order (or, after a
    stream broke, the order in ``order``) from ``next``, and ``sent_on[i]`` remembers the
    stream that carried each. The publisher's ``_inflight`` maps each unanswered id to its
    batch, so a batch costs one object however many events it holds, and the window still
    counts events.
    """

    __slots__ = (
        "deadline",
        "done",
        "frames",
        "ids",
        "next",
        "on_ack",
        "on_nack",
        "open",
        "order",
        "queued",
        "send_by",
        "sent_on",
        "topic_id",
    )

    def __init__(
        self,
        ids: list[bytes],
        frames: list[bytes],
        topic_id: bytes,
        deadline: float,
        on_ack: Callback | None,
        on_nack: Callback | None,
        send_by: SendDeadline | None = None,
    ) -> None:
        self.ids = ids
        self.frames = frames
        self.topic_id = topic_id
        self.deadline = deadline
        self.on_ack = on_ack
        self.on_nack = on_nack
        self.send_by = send_by
        #: The indexes still to send, in order; None while that is every frame, in order.
        self.order: list[int] | None = None
        self.next = 0
        self.sent_on: list[_Stream | None] = [None] * len(ids)
        #: Events with no outcome yet; ``done`` once none is left.
        self.open = len(ids)
        self.done = False
        self.queued = True

    @property
    def left(self) -> int:
        """Frames still to send before the batch leaves the queue."""
        return len(self.frames if self.order is None else self.order) - self.next

    def next_size(self) -> int:
        """The size of the next frame to send."""
        index = self.next if self.order is None else self.order[self.next]
        return len(self.frames[index])

    def skip(self) -> bytes:
        """Pass over the next frame, unsent; its event's id."""
        index = self.next if self.order is None else self.order[self.next]
        self.next += 1
        return self.ids[index]

    def skip_rest(self) -> list[bytes]:
        """Pass over every frame still to send; their events' ids."""
        order = self.order
        rest = range(self.next, len(self.ids)) if order is None else order[self.next :]
        self.next = len(self.ids) if order is None else len(order)
        return [self.ids[i] for i in rest]

    def take(
        self, room: int, byte_room: int | None, stream: _Stream, max_frame: int = 0
    ) -> list[bytes]:
        """Up to ``room`` frames (and ``byte_room`` bytes, but at least one), sent on ``stream``.

        With ``max_frame``, the frames stop before the first one longer than that.
        """
        start = self.next
        order = self.order
        if order is None:
            frames = self.frames[start : start + room]
        else:
            frames = [self.frames[i] for i in order[start : start + room]]
        if max_frame:
            for count, frame in enumerate(frames):
                if len(frame) > max_frame:
                    frames = frames[:count]
                    break
        if byte_room is not None and sum(map(len, frames)) > byte_room:
            size = 0
            for count, frame in enumerate(frames):
                size += len(frame)
                if size > byte_room:
                    frames = frames[: max(count, 1)]
                    break
        self.next = end = start + len(frames)
        if order is None:
            self.sent_on[start:end] = [stream] * len(frames)
        else:
            for i in order[start:end]:
                self.sent_on[i] = stream
        return frames

    def finish(self) -> None:
        """Mark the batch done and let its frames go: it may wait in the deadline queue
        behind an unanswered event for as long as that event's deadline."""
        self.done = True
        self.frames = []
        self.ids = []
        self.sent_on = []
        self.order = None

    def resend(self, stream: _Stream, inflight: dict[bytes, Any]) -> bool:
        """Put the unanswered events ``stream`` carried ahead of those not sent yet.

        Events sent on other streams are left to those. True when there were any (a batch
        no longer queued must go back in the queue).
        """
        ids, sent_on = self.ids, self.sent_on
        lost = [i for i in range(len(ids)) if sent_on[i] is stream and inflight.get(ids[i]) is self]
        if not lost:
            return False
        for i in lost:
            sent_on[i] = None
        order = self.order
        unsent = list(range(self.next, len(ids))) if order is None else order[self.next :]
        self.order = lost + unsent
        self.next = 0
        return True


_Unit = _Pending | _Batch


@dataclass(eq=False)
class _Stream:
    call: Any
    topic_ids: set[bytes]
    batch: bool
    max_events: int
    max_bytes: int
    #: The longest frame the server receives; 0 for one as long as the client sends.
    max_frame: int = 0
    reader: asyncio.Task[None] | None = None
    error: BaseException | None = None
    replies: int = 0
    clean: bool = False
    forced: set[bytes] = field(default_factory=set)


@dataclass(frozen=True)
class PublisherOptions:
    """Tuning of a publisher."""

    client_id: str
    max_in_flight: int = 5000
    ack_timeout: float = 60.0
    batch: bool = True
    backoff_initial: float = 0.05
    backoff_max: float = 2.0


class Publisher:
    """Publishes events for one client on one event loop."""

    def __init__(self, connection: Connection, topics: TopicCache, options: PublisherOptions):
        self._connection = connection
        self._topics = topics
        self._options = options
        self._queue: deque[_Unit] = deque()
        self._inflight: dict[bytes, _Unit] = {}
        self._deadlines: deque[_Unit] = deque()
        self._room = asyncio.Event()
        self._room.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._wakeup = asyncio.Event()
        self._stream: _Stream | None = None
        self._writer: asyncio.Task[None] | None = None
        self._timer: asyncio.Task[None] | None = None
        self._callbacks: set[asyncio.Task[Any]] = set()
        self._readers: set[asyncio.Task[None]] = set()
        self._closed = False
        self._chunk = SEND_CHUNK
        self._failures = 0
        self._open_request = ensign_pb2.PublisherRequest(
            open_stream=ensign_pb2.OpenStream(client_id=options.client_id)
        ).SerializeToString()

    # -- public ----------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Events published whose outcome has not arrived yet."""
        return len(self._inflight)

    async def publish(
        self,
        topic_id: bytes,
        events: Iterable[Event],
        on_ack: Callback | None = None,
        on_nack: Callback | None = None,
        send_by: SendDeadline | None = None,
    ) -> None:
        """Queue events for ``topic_id``; waits while the in-flight window is full.

        With ``send_by``, an event still unsent when it passes fails with
        :class:`~django_ensign.client.exceptions.SendDeadlinePassed` instead of going out.
        """
        self._check_open()
        limit = self._options.max_in_flight
        timeout = self._options.ack_timeout
        queued = False
        try:
            for event in events:
                if len(self._inflight) >= limit:
                    await self._wait_for_room()
                event._reset()
                local_id = event.local_id
                frame = framing.event_frame(topic_id, event.serialize(), local_id)
                pending = _Pending(
                    event,
                    local_id,
                    topic_id,
                    frame,
                    time.monotonic() + timeout,
                    on_ack,
                    on_nack,
                    send_by,
                )
                self._inflight[local_id] = pending
                queued = True
                if self._enqueue(pending):
                    await asyncio.sleep(0)
        finally:
            if queued:  # as in publish_encoded: a refused event does not hold back the rest
                self._queued()

    async def publish_encoded(
        self,
        topic_id: bytes,
        events: Iterable[tuple[bytes, bytes]],
        on_ack: Callback | None = None,
        on_nack: Callback | None = None,
        send_by: SendDeadline | None = None,
    ) -> None:
        """As :meth:`publish`, for ``(local id, serialized Event)`` pairs instead of Events.

        Sent, resent and timed out exactly as events are; only the callbacks hear of the
        outcomes, as there is no Event object to settle. The events go in chunks that fit
        the window, each one queue entry (see :class:`_Batch`). InvalidEvent, with nothing
        sent, when an id is repeated in ``events`` or belongs to an event still in flight.
        """
        self._check_open()
        items = list(events)
        every_id = [local_id for local_id, _ in items]
        if len(set(every_id)) < len(every_id) or not self._inflight.keys().isdisjoint(every_id):
            raise exceptions.InvalidEvent(_ID_IN_USE)
        limit = self._options.max_in_flight
        start = 0
        try:
            while start < len(items):
                if len(self._inflight) >= limit:
                    await self._wait_for_room()
                end = start + min(limit - len(self._inflight), SEND_CHUNK_BATCHED)
                chunk = items[start:end]
                ids = every_id[start:end]
                if not self._inflight.keys().isdisjoint(ids):  # another caller's, meanwhile
                    raise exceptions.InvalidEvent(_ID_IN_USE)
                start = end
                frames = [framing.event_frame(topic_id, body, i) for i, body in chunk]
                deadline = time.monotonic() + self._options.ack_timeout
                batch = _Batch(ids, frames, topic_id, deadline, on_ack, on_nack, send_by)
                self._inflight.update(dict.fromkeys(ids, batch))
                self._enqueue(batch)
                if start < len(items):
                    self._wake_writer()
                    await asyncio.sleep(0)
        finally:
            if start:  # what was queued gets sent and its deadline timer, whatever happens
                self._queued()

    def _check_open(self) -> None:
        if self._closed:
            raise exceptions.ClientClosed()

    async def _wait_for_room(self) -> None:
        while len(self._inflight) >= self._options.max_in_flight:
            self._room.clear()
            self._wake_writer()
            # Room comes back as outcomes arrive or deadlines pass: with no server,
            # only the deadline timer can free it.
            self._start_timer()
            await self._room.wait()
            self._check_open()

    def _enqueue(self, unit: _Unit) -> bool:
        """Queue what is in ``_inflight`` now; True when the caller should yield to the writer."""
        self._idle.clear()
        self._queue.append(unit)
        deadlines = self._deadlines
        while deadlines and deadlines[0].done:
            deadlines.popleft()
        if len(deadlines) > 2 * self._options.max_in_flight:
            # One event left unanswered (a server that dropped its reply) would otherwise
            # pin every unit behind it, frames and all, until its deadline. In place: the
            # expiry task holds this deque.
            live = [pending for pending in deadlines if not pending.done]
            deadlines.clear()
            deadlines.extend(live)
        deadlines.append(unit)
        if len(self._queue) >= self._chunk:
            # A long publish loop that never yields would otherwise hold every event
            # back until the window fills.
            self._wake_writer()
            return True
        return False

    def _queued(self) -> None:
        if self._closed:
            return  # a call that raced close(): close() answers what it left in flight
        if self._inflight:
            self._idle.clear()
        self._wake_writer()
        self._start_timer()

    def _start_timer(self) -> None:
        if self._timer is None or self._timer.done():
            self._timer = asyncio.get_running_loop().create_task(self._expire())

    async def flush(self, timeout: float | None = 2.0) -> None:  # noqa: ASYNC109
        """Wait until every published event has an outcome; FlushTimeout after ``timeout``."""
        if not self._inflight:
            return
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            raise exceptions.FlushTimeout(
                f"{len(self._inflight)} events had no ack or nack after {timeout} seconds"
            ) from None

    async def close(self) -> None:
        """Wait for every outcome (bounded by the events' deadlines), then end the stream."""
        await self.flush(timeout=None)
        await self.drain_callbacks()
        self._closed = True
        self._room.set()
        stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(Exception):
                await stream.call.done_writing()
            if stream.reader is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(stream.reader), 5.0)
            stream.call.cancel()
        for task in (self._writer, self._timer, *self._readers):
            if task is not None and not task.done():
                task.cancel()
        for task in (self._writer, self._timer, *self._readers):
            if task is not None:
                with contextlib.suppress(BaseException):
                    await task
        if self._inflight:
            # Queued by a publish that raced this close, after the stream was done:
            # nothing will answer them now, and waiting for them would be forever.
            self._fail_all(exceptions.ClientClosed())
            await self.drain_callbacks()

    async def drain_callbacks(self) -> None:
        """Wait for the on_ack/on_nack coroutines started so far."""
        while self._callbacks:
            await asyncio.gather(*list(self._callbacks), return_exceptions=True)

    # -- writer ----------------------------------------------------------------

    def _wake_writer(self) -> None:
        self._wakeup.set()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    async def _write_loop(self) -> None:
        try:
            await self._write_forever()
        except asyncio.CancelledError:
            if not self._closed:
                # Only the end of the loop (asyncio.run cancels every task) cancels the
                # writer of an open publisher: its events would wait forever, so they fail.
                self._fail_all(
                    exceptions.LoopEnded(
                        "the event loop that published this event ended before its ack or nack"
                    )
                )
                # asyncio.run waits for this task, not for the callback tasks made just now.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.drain_callbacks(), LOOP_END_GRACE)
            raise

    async def _write_forever(self) -> None:
        backoff = self._options.backoff_initial
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if self._failures and (self._stream is None or self._stream.error is not None):
                await asyncio.sleep(
                    min(
                        self._options.backoff_initial * 2 ** min(self._failures, 16),
                        self._options.backoff_max,
                    )
                )
            try:
                stream = await self._current_stream()
            except (grpc.aio.AioRpcError, exceptions.StreamError, OSError) as err:
                logger.info(
                    "publish stream could not open (%s); retrying in %.2fs", _describe(err), backoff
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._options.backoff_max)
                continue
            except exceptions.EnsignError as err:
                self._fail_all(err)
                continue
            backoff = self._options.backoff_initial
            taken = self._take(stream)
            if taken is None:
                await self._rotate(stream)
                continue
            units, frames, too_long = taken
            if too_long:
                self._refuse_too_long(too_long, stream.max_frame)
            if not frames:
                continue
            # Marked before the write: if the stream ends meanwhile, _ended requeues them.
            for unit in units:
                if not isinstance(unit, _Batch):  # a batch marked its events as it gave them
                    unit.stream = stream
                    unit.event._state = EventState.PUBLISHED
            send_by = _earliest(units)
            if send_by is not None and send_by <= send_deadline.clock():
                # Passed while on_nack callbacks ran (events too long, or withdrawn while
                # this request was taken): nothing of it goes out.
                self._give_up_write(units, stream, "it passed before the write")
                continue
            try:
                if send_by is None:
                    await self._write(stream, frames)
                else:
                    # gRPC holds a write while the server reads nothing (flow control):
                    # frames it still holds at the deadline must not go out after it. A
                    # write keeps the deadline it started with.
                    async with asyncio.timeout(send_by - send_deadline.clock()):
                        await self._write(stream, frames)
            except TimeoutError:
                self._give_up_write(units, stream, "a write outlasted it")
                continue
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError, grpc.aio.UsageError) as err:
                self._requeue([u for u in units if not u.done], stream)
                self._broken(stream, err)
                continue

    @staticmethod
    async def _write(stream: _Stream, frames: list[bytes]) -> None:
        if stream.batch and len(frames) > 1:
            await stream.call.write(framing.batch_request(frames))
        else:
            for frame in frames:
                await stream.call.write(frame)

    def _take(self, stream: _Stream) -> tuple[list[_Unit], list[bytes], list[bytes]] | None:
        """The next request's events and frames, and the ids of events passed over as
        longer than the server receives; None when the stream lacks their topic."""
        queue = self._queue
        limit = stream.max_events if stream.batch else 64
        max_bytes = stream.max_bytes
        max_frame = stream.max_frame
        size = 0
        units: list[_Unit] = []
        frames: list[bytes] = []
        too_long: list[bytes] = []
        now = send_deadline.clock()
        while queue and len(frames) < limit:
            unit = queue[0]
            if unit.send_by is not None and unit.send_by.at <= now and not unit.done:
                self._withdraw(unit)
                now = send_deadline.clock()  # its on_nack callbacks ran meanwhile
                if isinstance(unit, _Batch) and not unit.done:
                    # Its events on a stream still open wait for their outcome there.
                    queue.popleft()
                    unit.queued = False
                    continue
            if unit.done:
                queue.popleft()
                if isinstance(unit, _Batch):
                    unit.queued = False
                continue
            if unit.topic_id not in stream.topic_ids and unit.topic_id not in stream.forced:
                if frames or too_long:
                    break  # the refused events are settled first; the next take rotates
                return None
            if isinstance(unit, _Batch):
                while max_frame and unit.left and unit.next_size() > max_frame:
                    too_long.append(unit.skip())
                if unit.left:
                    byte_room = max_bytes - size if stream.batch else None
                    if frames and byte_room is not None and byte_room < unit.next_size():
                        break
                    chunk = unit.take(limit - len(frames), byte_room, stream, max_frame)
                    size += sum(map(len, chunk)) if stream.batch else 0
                    frames += chunk
                    units.append(unit)
                    if unit.left:
                        break  # the request is full; the rest of the batch waits at the head
                queue.popleft()
                unit.queued = False
                continue
            if max_frame and len(unit.frame) > max_frame:
                queue.popleft()
                too_long.append(unit.local_id)
                continue
            if stream.batch:
                item = len(unit.frame)
                if frames and size + item > max_bytes:
                    break
                size += item
            queue.popleft()
            units.append(unit)
            frames.append(unit.frame)
        return units, frames, too_long

    def _give_up_write(self, units: list[_Unit], stream: _Stream, why: str) -> None:
        """End ``stream`` with a write of ``units`` unfinished at their send deadline, and
        withdraw their events: what gRPC still held of them never goes out."""
        self._requeue([u for u in units if not u.done], stream)
        self._broken(stream, exceptions.SendDeadlinePassed(why))
        now = send_deadline.clock()
        for unit in units:
            if not unit.done and unit.send_by is not None and unit.send_by.at <= now:
                # Now, not at the next take: that waits for a new stream, and the events'
                # own deadline could pass first and blame a server that is up.
                self._withdraw(unit)

    def _withdraw(self, unit: _Unit) -> None:
        """Fail the events ``unit`` has still to send, as their send deadline passed.

        A batch's events already sent on a stream that is still open keep waiting for
        their outcome there.
        """
        error = exceptions.SendDeadlinePassed("its send deadline passed before it was sent")
        if not isinstance(unit, _Batch):
            self._fail(unit, error)
        else:
            inflight = self._inflight
            for local_id in unit.skip_rest():
                if inflight.get(local_id) is unit:
                    nack = Nack(local_id, 0, str(error), cause=error)
                    self._settle(local_id, nack)  # the batch finishes with its last event
        self._after_settle()

    def _refuse_too_long(self, local_ids: list[bytes], max_frame: int) -> None:
        """Nack events whose message the server would not receive, as the server would nack
        an event over its size limit: sent, it would end the stream at every resend."""
        error = (
            f"maximum event size has been exceeded: the server receives messages of at most "
            f"{max_frame:,} bytes (not sent)"
        )
        for local_id in local_ids:
            self._settle(local_id, Nack(local_id, NackCode.MAX_EVENT_SIZE_EXCEEDED, error))
        self._after_settle()

    def _requeue(self, units: list[_Unit], stream: _Stream) -> None:
        """Send again, first and in order, what ``units`` sent on ``stream`` and is unanswered."""
        again: list[_Unit] = []
        for unit in units:
            if isinstance(unit, _Batch):
                if unit.resend(stream, self._inflight) and not unit.queued:
                    unit.queued = True
                    again.append(unit)
            elif unit.stream is stream:
                unit.stream = None
                again.append(unit)
        self._queue.extendleft(reversed(again))

    async def _rotate(self, stream: _Stream) -> None:
        """Open a new stream whose topic map includes a topic created after this one opened."""
        topic_id = self._queue[0].topic_id
        if self._stream is stream:
            self._stream = None
            with contextlib.suppress(Exception):
                await stream.call.done_writing()
        try:
            fresh = await self._current_stream()
        except (grpc.aio.AioRpcError, exceptions.EnsignError, OSError):
            return
        if topic_id not in fresh.topic_ids:
            # The server does not list it (archived, destroyed, not ours): send anyway
            # and let the server's nack tell the caller why.
            fresh.forced.add(topic_id)

    async def _current_stream(self) -> _Stream:
        if self._stream is not None and self._stream.error is None:
            return self._stream
        resources = self._connection.resources()

        async def start() -> Any:
            return resources.publish(metadata=await self._connection.tokens.metadata())

        try:
            call, reply = await handshake.open_stream(start, self._open_request)
        except grpc.aio.AioRpcError as err:
            if is_retryable(err):
                raise
            raise translate(err) from err
        if reply is EOF or reply.WhichOneof("embed") != "ready":
            call.cancel()
            raise exceptions.StreamError("the server did not answer open_stream with ready")
        ready = reply.ready
        self._topics.update(ready.topics)
        use_batch = self._options.batch and ready.HasField("batch")
        stream = _Stream(
            call=call,
            topic_ids=set(ready.topics.values()),
            batch=use_batch,
            max_events=(ready.batch.max_events or DEFAULT_BATCH_EVENTS) if use_batch else 1,
            max_bytes=(ready.batch.max_bytes or DEFAULT_BATCH_BYTES) if use_batch else 0,
            # The extension comes with django-ensign's server, whose limit is the client's.
            max_frame=0 if ready.HasField("batch") else framing.STOCK_MAX_MESSAGE_BYTES,
        )
        stream.reader = asyncio.get_running_loop().create_task(self._read_loop(stream))
        self._readers.add(stream.reader)
        stream.reader.add_done_callback(self._readers.discard)
        self._stream = stream
        self._chunk = SEND_CHUNK_BATCHED if use_batch else SEND_CHUNK
        return stream

    # -- reader ----------------------------------------------------------------

    async def _read_loop(self, stream: _Stream) -> None:
        call = stream.call
        try:
            while True:
                reply = await call.read()
                if reply is EOF:
                    stream.clean = True
                    break
                stream.replies += 1
                kind = reply.WhichOneof("embed")
                if kind == "replies":
                    for ack in reply.replies.acks:
                        local_id = ack.id  # each read of a bytes field makes a new object
                        self._settle(local_id, Ack(local_id, ack.committed))
                    for nack in reply.replies.nacks:
                        self._settle(nack.id, Nack(nack.id, nack.code, nack.error))
                elif kind == "ack":
                    self._settle(reply.ack.id, Ack(reply.ack.id, reply.ack.committed))
                elif kind == "nack":
                    nack = reply.nack
                    self._settle(nack.id, Nack(nack.id, nack.code, nack.error))
                self._after_settle()  # once per reply, however many outcomes it carried
        except grpc.aio.AioRpcError as err:
            stream.error = err
            if err.code() != grpc.StatusCode.CANCELLED:
                logger.info("publish stream broke: %s", err.code().name)
        except asyncio.CancelledError:
            stream.error = exceptions.ClientClosed()
            raise
        finally:
            self._ended(stream)

    def _broken(self, stream: _Stream, err: BaseException) -> None:
        if stream.error is None:
            stream.error = err
        if self._stream is stream:
            self._stream = None
        stream.call.cancel()

    def _ended(self, stream: _Stream) -> None:
        """Requeue, in order, every event sent on ``stream`` that has no outcome."""
        if stream.error is None:
            stream.error = exceptions.StreamError("publish stream ended")
        if self._stream is stream:
            self._stream = None
        # A server that accepts streams and then breaks them at once must not be hammered.
        self._failures = 0 if stream.clean or stream.replies else self._failures + 1
        lost = [
            unit
            for unit in dict.fromkeys(self._inflight.values())  # each batch once, in order
            if (stream in unit.sent_on if isinstance(unit, _Batch) else unit.stream is stream)
        ]
        if lost:
            self._requeue(lost, stream)
            if not self._closed:
                self._wake_writer()

    # -- outcomes --------------------------------------------------------------

    def _settle(self, local_id: bytes, outcome: Outcome) -> None:
        """Hand an outcome to its event and callback; the caller then calls _after_settle."""
        unit = self._inflight.pop(local_id, None)
        if unit is None:
            return  # a duplicate reply after a resend, or an event that timed out
        if isinstance(unit, _Batch):
            unit.open -= 1
            if not unit.open:
                unit.finish()
        else:
            unit.finish()
            unit.event._settle(outcome)
        if isinstance(outcome, Nack) and outcome.code == NackCode.TOPIC_UNKNOWN:
            # A destroyed (maybe recreated) topic: look the name up again next time.
            self._topics.forget(unit.topic_id)
        callback = unit.on_ack if isinstance(outcome, Ack) else unit.on_nack
        if callback is not None:
            self._run_callback(callback, outcome)

    def _fail(self, unit: _Unit, error: BaseException) -> None:
        """End the wait of ``unit``'s unanswered events with ``error``."""
        inflight = self._inflight
        if isinstance(unit, _Batch):
            ids = [local_id for local_id in unit.ids if inflight.get(local_id) is unit]
            failed = ids
            unit.open = 0
        else:
            ids = [unit.local_id] if inflight.get(unit.local_id) is unit else []
            failed = [unit.local_id]  # its Event is failed either way, so its callback hears
            unit.event._settle(None, error)
        for local_id in ids:
            del inflight[local_id]
        unit.finish()
        if unit.on_nack is not None:
            # Callback-only callers must hear of it too: a client-made Nack stands in.
            code = NackCode.TIMEOUT if isinstance(error, exceptions.PublishTimeout) else 0
            for local_id in failed:
                self._run_callback(unit.on_nack, Nack(local_id, code, str(error), cause=error))

    def _fail_all(self, error: BaseException) -> None:
        for unit in list(dict.fromkeys(self._inflight.values())):
            self._fail(unit, error)
        self._queue.clear()
        self._after_settle()

    def _after_settle(self) -> None:
        if len(self._inflight) < self._options.max_in_flight:
            self._room.set()
        if not self._inflight:
            self._idle.set()

    def _run_callback(self, callback: Callback, outcome: Outcome) -> None:
        try:
            result = callback(outcome)
        except Exception:
            logger.exception("publish callback %r failed", callback)
            return
        if result is None:
            return  # a plain function: the usual callback, and isawaitable is not free
        if type(result) is not CoroutineType:
            if inspect.isawaitable(result):
                self._track(asyncio.get_running_loop().create_task(_guard(result, callback)))
            return
        # Most callbacks finish without suspending: run the first step here, in a context
        # of its own as a task would, and make a task only for one that has to wait.
        context = contextvars.copy_context()
        try:
            waiting = context.run(result.send, None)
        except (StopIteration, asyncio.CancelledError):
            return  # done (a task of it would have ended cancelled: nothing to report)
        except Exception:
            logger.exception("publish callback %r failed", callback)
            return
        loop = asyncio.get_running_loop()
        self._track(loop.create_task(_resume(result, waiting, callback), context=context))

    def _track(self, task: asyncio.Task[None]) -> None:
        self._callbacks.add(task)
        task.add_done_callback(self._callbacks.discard)

    def _timeout(self) -> exceptions.PublishTimeout:
        within = f"no ack or nack within {self._options.ack_timeout} seconds"
        if self._stream is None or self._stream.error is not None:
            return exceptions.StreamDown(f"{within}, and no publish stream to the server is open")
        return exceptions.PublishTimeout(within)

    async def _expire(self) -> None:
        """Fail the wait of events whose deadline passed without an outcome."""
        deadlines = self._deadlines
        while deadlines:
            now = time.monotonic()
            expired = False
            while deadlines and (deadlines[0].done or deadlines[0].deadline <= now):
                pending = deadlines.popleft()
                if not pending.done:
                    expired = True
                    self._fail(pending, self._timeout())
            if expired:
                self._after_settle()
            if deadlines:
                await asyncio.sleep(min(1.0, max(0.01, deadlines[0].deadline - now)))


def _earliest(units: list[_Unit]) -> float | None:
    """The earliest send deadline of ``units``, if any has one."""
    earliest: float | None = None
    for unit in units:
        if unit.send_by is not None and (earliest is None or unit.send_by.at < earliest):
            earliest = unit.send_by.at
    return earliest


async def _guard(result: Awaitable[Any], callback: Callback) -> None:
    try:
        await result
    except Exception:
        logger.exception("publish callback %r failed", callback)


class _Suspended:
    """A started coroutine, awaitable from where it suspended (its first yield is given)."""

    __slots__ = ("coro", "yielded")

    def __init__(self, coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
        self.coro = coro
        self.yielded = yielded

    def __await__(self) -> Generator[Any, Any, None]:
        coro, yielded = self.coro, self.yielded
        while True:
            try:
                sent = yield yielded
            except BaseException as err:  # a cancellation thrown in by the task
                try:
                    yielded = coro.throw(err)
                except StopIteration:
                    return
                continue
            try:
                yielded = coro.send(sent)
            except StopIteration:
                return


async def _resume(coro: Coroutine[Any, Any, Any], yielded: Any, callback: Callback) -> None:
    try:
        await _Suspended(coro, yielded)
    except Exception:
        logger.exception("publish callback %r failed", callback)


def _describe(err: BaseException) -> str:
    if isinstance(err, grpc.aio.AioRpcError):
        return describe_error(err)
    return str(err)

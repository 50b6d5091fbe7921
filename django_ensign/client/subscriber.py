"""Subscriptions: an async iterator of :class:`ReceivedEvent` over one Subscribe stream."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Literal

import grpc
import grpc.aio

from django_ensign.client import exceptions, handshake
from django_ensign.client.connection import EOF, Connection
from django_ensign.client.errors import is_retryable, translate
from django_ensign.client.events import ReceivedEvent
from django_ensign.client.inbox import Inbox
from django_ensign.client.topics import TopicCache
from django_ensign.proto.api.v1beta1 import ensign_pb2, groups_pb2, query_pb2

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 128
# Acks wait at most this long (or until a quarter of the window, at most ACK_BATCH, is
# waiting) before going out in one AckBatch.
ACK_DELAY = 0.02
ACK_BATCH = 256
#: The server's window when the subscription does not ask for one (the embedded server's
#: ``subscribe.DEFAULT_WINDOW``).
SERVER_WINDOW = 1024
# How long close() waits for the server to end the stream after our half-close (it reads
# the last acks and releases the deliveries first) before cancelling it.
CLOSE_GRACE = 5.0


Start = Literal["earliest", "latest"]
"""Where a consumer group starts on a topic it has no position on yet."""

_STARTS = {"earliest": ensign_pb2.Subscription.EARLIEST, "latest": ensign_pb2.Subscription.LATEST}


#: What a (re)opening stream may meet during an outage.
_OUTAGES = (
    exceptions.Unavailable,
    exceptions.Aborted,
    exceptions.StreamError,
    exceptions.AuthServiceUnreachable,
)


def start_position(start: Start) -> ensign_pb2.Subscription.Start.ValueType:
    """The ``Subscription.start`` value of ``"earliest"`` or ``"latest"``."""
    try:
        return _STARTS[start]
    except (KeyError, TypeError):
        raise exceptions.ConfigurationError(
            f"start must be 'earliest' or 'latest', got {start!r}"
        ) from None


def consumer_group(group: str | groups_pb2.ConsumerGroup | None) -> groups_pb2.ConsumerGroup | None:
    """A ConsumerGroup message from a name or a message."""
    if group is None or isinstance(group, groups_pb2.ConsumerGroup):
        return group
    if isinstance(group, str) and group:
        return groups_pb2.ConsumerGroup(name=group)
    raise exceptions.ConfigurationError("consumer_group must be a name or a ConsumerGroup")


def as_query(query: str | query_pb2.Query | None) -> query_pb2.Query | None:
    """A Query message from an EnSQL string or a message."""
    if query is None or isinstance(query, query_pb2.Query):
        return query
    if isinstance(query, str) and query.strip():
        return query_pb2.Query(query=query.strip())
    raise exceptions.InvalidQuery("query must be a non-empty EnSQL string")


class Subscription:
    """Events of one or more topics, in the order the server delivers them.

    Iterate with ``async for``; ack or nack each event. Broken streams are reopened
    (with a consumer group the server resumes after the last acked event).
    """

    def __init__(
        self,
        connection: Connection,
        cache: TopicCache,
        topics: list[str],
        *,
        client_id: str,
        group: groups_pb2.ConsumerGroup | None,
        query: query_pb2.Query | None,
        batch_size: int,
        window: int = 0,
        start: ensign_pb2.Subscription.Start.ValueType = ensign_pb2.Subscription.EARLIEST,
        reconnect: bool = True,
        backoff_max: float = 2.0,
        batch: bool = True,
        on_open: Callable[[Subscription], None] | None = None,
    ) -> None:
        self._connection = connection
        self._cache = cache
        self._request = ensign_pb2.SubscribeRequest(
            subscription=ensign_pb2.Subscription(
                client_id=client_id,
                topics=topics,
                query=query,
                group=group,
                batch_size=batch_size,
                window=window,
                start=start,
            )
        )
        self._reconnect = reconnect
        self._backoff_max = backoff_max
        self._call: Any = None
        self._names: dict[bytes, str] = {}
        self._batch_acks = False
        self._allow_batch = batch
        self._on_open = on_open
        # The stream is read by a task of its own: cancelling a caller's wait (wait_for,
        # a timeout) must not cancel the gRPC read, which would end the whole call.
        self._queue: Inbox[ReceivedEvent | BaseException | None] = Inbox(max(2 * batch_size, 64))
        self._pump: asyncio.Task[None] | None = None
        self._finished = False
        self._pending_acks: list[bytes] = []
        # A window's worth of acks held back stalls the server: send once a quarter of it
        # is waiting, so a small window keeps turning over while acks still go together.
        self._ack_batch = max(1, min(ACK_BATCH, (window or SERVER_WINDOW) // 4))
        self._ack_timer: asyncio.Task[None] | None = None
        self._write_lock: asyncio.Lock | None = None
        self._closed = False
        self.topics: dict[str, bytes] = {}

    def __aiter__(self) -> Subscription:
        return self

    async def __aenter__(self) -> Subscription:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Open the stream now (iteration opens it otherwise); raises the server's refusal."""
        if self._pump is not None or self._closed:
            return
        if self._on_open is not None:
            self._on_open(self)
        try:
            await self._open()
        except _OUTAGES as err:
            if not self._waits_out(err):
                raise  # else the pump keeps trying
        self._pump = asyncio.get_running_loop().create_task(self._run())

    def _waits_out(self, err: exceptions.EnsignError) -> bool:
        """Whether reopening goes on after ``err`` rather than ending the subscription."""
        if not self._reconnect:
            return False
        # An auth service that answered this client once is down for now (a token ran
        # out during an outage); one never reached is misconfigured.
        return not isinstance(err, exceptions.AuthServiceUnreachable) or (
            self._connection.tokens.reached
        )

    async def __anext__(self) -> ReceivedEvent:
        if self._pump is None and not self._closed:
            await self.open()
        if self._finished and self._queue.empty():
            raise StopAsyncIteration
        item = await self._queue.get()
        if item is None:
            self._finished = True
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            self._finished = True
            raise item
        return item

    async def _run(self) -> None:
        ending: BaseException | None = None
        backoff = 0.05
        queue = self._queue
        try:
            # After close() half-closes the stream, keep reading (and dropping deliveries)
            # until the server ends it: by then it has read our last acks.
            while True:
                if self._call is None:
                    if self._closed:
                        break
                    try:
                        await self._open()
                    except _OUTAGES as err:
                        if not self._waits_out(err):
                            raise
                        await asyncio.sleep(backoff)
                        backoff = min(backoff * 2, self._backoff_max)
                        continue
                    await self._flush_acks()
                try:
                    reply = await self._call.read()
                except grpc.aio.AioRpcError as err:
                    self._call = None
                    if self._closed or err.code() == grpc.StatusCode.CANCELLED:
                        break
                    if self._reconnect and is_retryable(err):
                        logger.info("subscribe stream broke (%s); reopening", err.code().name)
                        await asyncio.sleep(backoff)
                        backoff = min(backoff * 2, self._backoff_max)
                        continue
                    raise translate(err) from err
                if reply is EOF:
                    self._call = None
                    if self._closed or not self._reconnect:
                        break
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self._backoff_max)
                    continue
                backoff = 0.05  # only a stream that delivers counts as healthy
                if self._closed:
                    continue
                kind = reply.WhichOneof("embed")
                if kind == "event":
                    wrapper = reply.event
                    received = ReceivedEvent(wrapper, self._names.get(wrapper.topic_id, ""), self)
                    if not queue.offer(received):
                        await queue.put(received)
                elif kind == "events":
                    for wrapper in reply.events.events:
                        if self._closed:
                            break
                        await queue.put(self._received(wrapper))
                elif kind == "ready":
                    self._ready(reply.ready)
        except exceptions.EnsignError as err:
            ending = err
        finally:
            if not self._closed:
                self._queue.push(ending)

    def _received(self, wrapper: Any) -> ReceivedEvent:
        return ReceivedEvent(wrapper, self._names.get(wrapper.topic_id, ""), self)

    def _ready(self, ready: ensign_pb2.StreamReady) -> None:
        self.topics = dict(ready.topics)
        self._names = {topic_id: name for name, topic_id in ready.topics.items()}
        self._cache.update(ready.topics)
        self._batch_acks = self._allow_batch and ready.HasField("batch")

    async def _start(self) -> Any:
        stub = self._connection.resources().stub
        return stub.Subscribe(metadata=await self._connection.tokens.metadata())

    async def _open(self) -> None:
        try:
            call, reply = await handshake.open_stream(self._start, self._request)
        except grpc.aio.AioRpcError as err:
            raise translate(err) from err
        if reply is EOF or reply.WhichOneof("embed") != "ready":
            call.cancel()
            raise exceptions.StreamError("the server did not answer the subscription with ready")
        self._ready(reply.ready)
        self._call = call

    # -- acks --------------------------------------------------------------------

    def _refuse_if_closed(self) -> None:
        if self._closed:
            # Queued, the ack would never be sent while the caller believed it was.
            raise exceptions.CouldNotAck(
                "the subscription that delivered this event is closed; a consumer group "
                "gets the event again"
            )

    async def send_ack(self, event_id: bytes) -> None:
        """Ack one delivered event (batched when the server supports AckBatch)."""
        self._refuse_if_closed()
        if self._call is None:
            # Between streams: sent once the next one opens (the event id is the server's,
            # the same on every stream).
            self._pending_acks.append(event_id)
            return
        if not self._batch_acks:
            await self._write(ensign_pb2.SubscribeRequest(ack=ensign_pb2.Ack(id=event_id)))
            return
        self._pending_acks.append(event_id)
        if len(self._pending_acks) >= self._ack_batch:
            await self._flush_acks()
        elif self._ack_timer is None or self._ack_timer.done():
            self._ack_timer = asyncio.get_running_loop().create_task(self._flush_later())

    async def send_nack(self, event_id: bytes, code: int, error: str) -> None:
        """Nack one delivered event."""
        self._refuse_if_closed()
        if self._call is None:
            return  # between streams: the server delivers the event again anyway
        await self._flush_acks()
        await self._write(
            ensign_pb2.SubscribeRequest(
                nack=ensign_pb2.Nack(id=event_id, code=code, error=error)  # type: ignore[arg-type]
            )
        )

    async def _flush_later(self) -> None:
        await asyncio.sleep(ACK_DELAY)
        await self._flush_acks()

    async def _flush_acks(self) -> None:
        if not self._pending_acks or self._call is None:
            return
        ids, self._pending_acks = self._pending_acks, []
        if self._batch_acks:
            await self._write(ensign_pb2.SubscribeRequest(acks=ensign_pb2.AckBatch(ids=ids)))
        else:
            for event_id in ids:
                await self._write(ensign_pb2.SubscribeRequest(ack=ensign_pb2.Ack(id=event_id)))

    async def _write(self, request: ensign_pb2.SubscribeRequest) -> None:
        if self._write_lock is None:
            self._write_lock = asyncio.Lock()
        call = self._call
        if call is None:
            return
        async with self._write_lock:
            try:
                await call.write(request)
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError, grpc.aio.UsageError) as err:
                # The read side sees the same failure and reopens; the server redelivers
                # what a consumer group did not get acks for.
                logger.info("subscribe ack not sent: %s", err)

    async def close(self) -> None:
        """Send pending acks and end the stream."""
        if self._closed:
            return
        with contextlib.suppress(Exception):
            await self._flush_acks()
        self._closed = True
        if self._ack_timer is not None and not self._ack_timer.done():
            self._ack_timer.cancel()
        self._queue.clear()  # frees a pump waiting for room
        call = self._call
        if call is not None:
            with contextlib.suppress(Exception):
                await call.done_writing()
                # Give the server a moment to read the last acks before the cancel resets
                # the stream; it may end the call itself on half-close.
                if self._pump is not None:
                    await asyncio.wait_for(asyncio.shield(self._pump), CLOSE_GRACE)
            call.cancel()
        self._call = None
        if self._pump is not None and not self._pump.done():
            self._pump.cancel()
            with contextlib.suppress(BaseException):
                await self._pump
        self._finished = True
        self._queue.push(None)  # wakes a reader blocked in __anext__

    aclose = close

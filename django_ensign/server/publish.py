"""The Publish stream (PROTOCOL.md §3) with the negotiated batch extension."""

from __future__ import annotations

import asyncio
import contextlib
import operator
from typing import Any

import grpc

from django_ensign.proto.api.v1beta1 import ensign_pb2, event_pb2
from django_ensign.server import rawviews, wirefmt
from django_ensign.server.state import (
    BATCH_MAX_BYTES,
    BATCH_MAX_EVENTS,
    MAX_EVENT_SIZE,
    ServerState,
)
from django_ensign.server.storage import PendingEvent
from django_ensign.server.streamcall import NO_TOPICS, Context, StreamCall
from django_ensign.server.topics import DELETING, READONLY

Code = ensign_pb2.Nack
OPEN_FIRST = "an open stream message must be sent immediately after opening the stream"
STORAGE_FAILED = "internal error, please wait and try again"
_CLOSING = (Code.INTERNAL, STORAGE_FAILED)
_TOO_BIG = (Code.MAX_EVENT_SIZE_EXCEEDED, "maximum event size has been exceeded")
#: What ``_topic_problem`` says of a topic that takes events.
_ACCEPTED = (None, None)
_TOPIC_ID = operator.attrgetter("topic_id")
_LOCAL_ID = operator.attrgetter("local_id")
_EVENT = operator.attrgetter("event")
#: Back-pressure: stop reading a stream while this many of its events await storage,
#: or while this many replies wait for a client that does not read them.
MAX_PENDING = 20_000
MAX_UNSENT = 10_000
#: Longest a shutdown waits for a stream's pending replies to be written.
SHUTDOWN_FLUSH = 5.0


def peer_host(context: Context) -> str:
    """The caller's address without the transport prefix and port."""
    peer = context.peer() or ""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]").replace("%5B", "").replace("%5D", "")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    return rest


def user_agent(context: Context) -> str:
    """The caller's user-agent metadata."""
    for key, value in context.invocation_metadata() or ():
        if key == "user-agent":
            return value if isinstance(value, str) else value.decode("latin-1")
    return ""


#: A Publish request as the server receives it: the parsed message and its bytes.
Request = tuple[ensign_pb2.PublisherRequest, bytes]
#: A nack reason: (code, message).
Problem = tuple[int, str]


def parse_request(raw: bytes) -> Request:
    """The request deserializer: parse (raising on bad bytes) and keep the bytes."""
    return ensign_pb2.PublisherRequest.FromString(raw), raw


async def next_request(iterator: Any) -> Any:
    """The next request, None at EOF; receive errors abort the call as the spec says."""
    try:
        return await iterator.__anext__()
    except StopAsyncIteration:
        return None


class PublishStream(StreamCall):
    """One Publish call."""

    def __init__(self, state: ServerState, context: Context) -> None:
        self.state = state
        self.context = context
        self.out: asyncio.Queue[bytes | Any | None] = asyncio.Queue()
        self.pending = 0
        self.drained = asyncio.Event()
        self.drained.set()
        self.events = self.acks = self.nacks = 0
        self.topics_seen: set[bytes] = set()
        self.allowed: dict[bytes, Any] = {}
        self.closing = False
        self.task: asyncio.Task[Any] | None = None

    async def shutdown(self) -> None:
        """Refuse new events, send every pending reply, then end the call."""
        self.closing = True
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._flush(), SHUTDOWN_FLUSH)
        if self.task is not None:
            self.task.cancel()

    async def _flush(self) -> None:
        await self.drained.wait()
        await self.out.join()

    async def _run(self, requests: Any) -> None:
        state, context = self.state, self.context
        claims = await self.authorize("publisher", requests)
        received = await self._recv(requests)
        if received is None:
            return
        first = received[0]
        if first.WhichOneof("embed") != "open_stream":
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, OPEN_FIRST)
        opened = first.open_stream
        topics = state.registry.resolve(claims.project_id, list(opened.topics))
        if not topics:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, NO_TOPICS)
        self.allowed = {t.id: t for t in topics}
        client_id = opened.client_id or claims.subject
        publisher = event_pb2.Publisher(
            publisher_id=claims.subject,
            ipaddr=peer_host(context),
            client_id=opened.client_id,
            user_agent=user_agent(context),
        )
        # Appended after each event's id: publisher (6), then local_id (16) explicitly empty.
        self.server_fields = wirefmt.field_bytes(6, publisher.SerializeToString()) + b"\x82\x01\x00"
        ready = ensign_pb2.PublisherReply(
            ready=ensign_pb2.StreamReady(
                client_id=client_id,
                server_id=state.server_id,
                topics={t.name: t.id for t in topics},
                batch=ensign_pb2.BatchExtension(
                    max_events=BATCH_MAX_EVENTS, max_bytes=BATCH_MAX_BYTES
                ),
            )
        )
        await context.write(ready)
        sender = asyncio.create_task(self._send())
        try:
            await self._loop(requests)
        finally:
            if not sender.done():
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sender

    async def _recv(self, requests: Any) -> Any:
        try:
            return await next_request(requests)
        except asyncio.CancelledError:
            raise
        except Exception:
            await self.context.abort(grpc.StatusCode.ABORTED, "could not recv event from client")

    async def _loop(self, requests: Any) -> None:
        context = self.context
        receive = requests.__anext__
        while True:
            # Awaited here rather than through _recv: one coroutine less per request.
            try:
                request, raw = await receive()
            except StopAsyncIteration:
                break
            except asyncio.CancelledError:
                raise
            except Exception:
                await context.abort(grpc.StatusCode.ABORTED, "could not recv event from client")
            kind = request.WhichOneof("embed")
            if kind == "event":
                self._publish_one(request.event, raw)
            elif kind == "events":
                self._publish_batch(request.events.events, raw)
            elif kind == "open_stream":
                await self._finish()
                await context.abort(
                    grpc.StatusCode.ABORTED, "cannot send multiple open stream messages"
                )
            else:
                await self._finish(close=False)
                await context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "unhandled publisher request message <nil>",
                )
            if self.pending > MAX_PENDING:
                await self.drained.wait()
            if self.out.qsize() > MAX_UNSENT:
                await self.out.join()
        await self._finish()

    async def _finish(self, close: bool = True) -> None:
        """Wait for every pending reply, optionally send CloseStream, and flush the sender."""
        await self.drained.wait()
        if close:
            self.out.put_nowait(
                ensign_pb2.PublisherReply(
                    close_stream=ensign_pb2.CloseStream(
                        events=self.events,
                        topics=len(self.topics_seen),
                        acks=self.acks,
                        nacks=self.nacks,
                    )
                )
            )
        self.out.put_nowait(None)
        await self.out.join()

    async def _send(self) -> None:
        write = self.context.write
        out = self.out
        while True:
            item = await out.get()
            try:
                if item is None:
                    return
                await write(item)
            finally:
                out.task_done()

    def _topic_problem(self, topic_id: bytes) -> tuple[Problem | None, Problem | None]:
        """Why events for ``topic_id`` are refused: before and after the event size check."""
        if not topic_id:
            return (Code.TOPIC_UNKNOWN, "no topic id specified"), None
        if len(topic_id) != 16:
            return (Code.TOPIC_UNKNOWN, "invalid topic id"), None
        if topic_id not in self.allowed:
            return (Code.TOPIC_UNKNOWN, "topic unknown or unhandled"), None
        topic = self.state.registry.by_id.get(topic_id)
        if topic is None or topic.state == DELETING:
            return None, (Code.TOPIC_DELETED, "topic has been deleted")
        if topic.state == READONLY:
            return None, (Code.TOPIC_ARCHIVED, "topic is archived")
        return None, None

    def _stripped(self, wrapper: event_pb2.EventWrapper, raw: bytes) -> bytes:
        """The client's wrapper as stored, before the server's fields are appended.

        A later occurrence of a field replaces an earlier one, so the storage appends
        ``id``, ``publisher``, an empty ``local_id``, ``offset`` and ``committed`` to the
        client's own bytes instead of rebuilding the message. Fields the server owns
        that merge rather than replace (``publisher``, ``committed``) or that must be
        zero are cleared first, in the rare case a client set them.
        """
        if not rawviews.wrapper_sets_owned(raw):
            return raw
        for name in ("publisher", "offset", "epoch", "is_duplicate", "duplicate_id", "committed"):
            wrapper.ClearField(name)
        return wrapper.SerializeToString()

    def _nack(self, local_id: bytes, code: int, error: str) -> ensign_pb2.Nack:
        self.nacks += 1
        return ensign_pb2.Nack(id=local_id, code=code, error=error)  # type: ignore[arg-type]

    def _publish_one(self, wrapper: event_pb2.EventWrapper, request: bytes) -> None:
        self.events += 1
        local_id = wrapper.local_id
        topic_id = wrapper.topic_id
        size = len(wrapper.event)
        problem, later = (_CLOSING, None) if self.closing else self._topic_problem(topic_id)
        problem = problem or (_TOO_BIG if size > MAX_EVENT_SIZE else later)
        if problem is not None:
            self.out.put_nowait(ensign_pb2.PublisherReply(nack=self._nack(local_id, *problem)))
            return
        raw = rawviews.sole_field(request, rawviews.EVENT_TAG)
        stored = wrapper.SerializeToString() if raw is None else self._stripped(wrapper, raw)
        self.topics_seen.add(topic_id)
        self.pending += 1
        self.drained.clear()

        def done(committed: int | None, failed: frozenset[int]) -> None:
            if committed is None or failed:
                reply: Any = ensign_pb2.PublisherReply(
                    nack=self._nack(local_id, Code.INTERNAL, STORAGE_FAILED)
                )
            else:
                self.acks += 1
                reply = wirefmt.publisher_ack(local_id, committed)
            self.out.put_nowait(reply)
            self._settle(1)

        rlid = self.state.rlids.take_one()
        self.state.storage.append([(topic_id, rlid, stored, size)], done, self.server_fields)

    def _publish_batch(self, wrappers: Any, request: bytes) -> None:
        count = len(wrappers)
        self.events += count
        if not count:
            return
        rlids = self.state.rlids.take(count)
        body = rawviews.sole_field(request, rawviews.EVENTS_TAG)
        raws: list[bytes] | None = None
        if body is not None:
            raws = rawviews.batch_wrappers(body)
            if len(raws) != count or rawviews.batch_sets_owned(body, count):
                raws = None
        accepted = None if raws is None else self._accept_whole(wrappers, rlids, raws)
        items, local_ids = accepted or self._accept_each(wrappers, rlids, raws)
        if not items:
            return
        self.pending += len(items)
        self.drained.clear()

        def done(committed: int | None, failed: frozenset[int]) -> None:
            nacked: list[ensign_pb2.Nack] = []
            if committed is not None and not failed:
                acked = local_ids
            else:
                acked = []
                for index, local_id in enumerate(local_ids):
                    if committed is None or index in failed:
                        nacked.append(self._nack(local_id, Code.INTERNAL, STORAGE_FAILED))
                    else:
                        acked.append(local_id)
            self.acks += len(acked)
            body = wirefmt.ack_entries(acked, committed, 1) if committed is not None else b""
            if nacked:
                body += ensign_pb2.ReplyBatch(nacks=nacked).SerializeToString()
            self.out.put_nowait(wirefmt.field_bytes(100, body))
            self._settle(len(items))

        self.state.storage.append(items, done, self.server_fields)

    def _accept_whole(
        self, wrappers: Any, rlids: list[bytes], raws: list[bytes]
    ) -> tuple[list[PendingEvent], list[bytes]] | None:
        """The batch's events and local ids if every one is accepted as sent, else None.

        The usual batch (one topic, none too big) is checked on columns that protobuf
        and ``map`` build in C, without running bytecode per event.
        """
        if self.closing:
            return None
        topic_ids = list(map(_TOPIC_ID, wrappers))
        topic_id = topic_ids[0]
        if topic_ids.count(topic_id) != len(topic_ids):
            return None
        if self._topic_problem(topic_id) != _ACCEPTED:
            return None
        sizes = list(map(len, map(_EVENT, wrappers)))
        if max(sizes) > MAX_EVENT_SIZE:
            return None
        self.topics_seen.add(topic_id)
        items = list(zip(topic_ids, rlids, raws, sizes, strict=True))
        return items, list(map(_LOCAL_ID, wrappers))

    def _accept_each(
        self, wrappers: Any, rlids: list[bytes], raws: list[bytes] | None
    ) -> tuple[list[PendingEvent], list[bytes]]:
        """The accepted events and their local ids, nacking the others, event by event."""
        items: list[PendingEvent] = []
        local_ids: list[bytes] = []
        nacks: list[ensign_pb2.Nack] = []
        closing = self.closing
        verdicts: dict[bytes, tuple[Problem | None, Problem | None]] = {}
        seen = self.topics_seen
        for index, wrapper in enumerate(wrappers):
            topic_id = wrapper.topic_id
            verdict = verdicts.get(topic_id)
            if verdict is None:
                verdict = verdicts[topic_id] = (
                    (_CLOSING, None) if closing else self._topic_problem(topic_id)
                )
            size = len(wrapper.event)
            problem = verdict[0] or (_TOO_BIG if size > MAX_EVENT_SIZE else verdict[1])
            if problem is not None:
                nacks.append(self._nack(wrapper.local_id, *problem))
                continue
            seen.add(topic_id)
            local_ids.append(wrapper.local_id)
            stored = raws[index] if raws is not None else self._stripped_any(wrapper)
            items.append((topic_id, rlids[index], stored, size))
        if nacks:
            self.out.put_nowait(
                ensign_pb2.PublisherReply(replies=ensign_pb2.ReplyBatch(nacks=nacks))
            )
        return items, local_ids

    def _stripped_any(self, wrapper: event_pb2.EventWrapper) -> bytes:
        """``_stripped`` for a wrapper whose own bytes are not at hand."""
        return self._stripped(wrapper, wrapper.SerializeToString())

    def _settle(self, count: int) -> None:
        self.pending -= count
        if self.pending == 0:
            self.drained.set()

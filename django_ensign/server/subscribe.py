"""The Subscribe stream (PROTOCOL.md §4): live tail, consumer groups (from the start or the
end), query replay, batches."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from dataclasses import dataclass
from typing import Any

import grpc

from django_ensign.proto.api.v1beta1 import ensign_pb2
from django_ensign.server import ensql, wirefmt
from django_ensign.server.groups import Group, GroupManager
from django_ensign.server.publish import next_request
from django_ensign.server.state import BATCH_MAX_BYTES, BATCH_MAX_EVENTS, ServerState
from django_ensign.server.storage import StoredEvent, read_offsets, read_range
from django_ensign.server.streamcall import NO_TOPICS, Context, StreamCall

SUBSCRIPTION_FIRST = "must send subscription to initialize stream"
#: The window of a subscription that asks for none (the SDK's SERVER_WINDOW assumes it).
DEFAULT_WINDOW = 1024
MAX_WINDOW = 100_000
_FETCH = 256
_BATCH_BYTES = 4 * 1024 * 1024


@dataclass
class _Out:
    offset: int
    rlid: bytes
    wrapper: bytes


class SubscribeStream(StreamCall):
    """One Subscribe call."""

    def __init__(self, state: ServerState, groups: GroupManager, context: Context) -> None:
        self.state = state
        self.groups = groups
        self.context = context
        self.wake = asyncio.Event()
        self.batch_size = 0
        self.window = DEFAULT_WINDOW
        self.query: ensql.Query | None = None
        self.query_topic: bytes | None = None
        self.group: Group | None = None
        self.topic_ids: list[bytes] = []
        self.task: asyncio.Task[Any] | None = None
        self.closing = False

    async def shutdown(self) -> None:
        """End the call; unacked group events are delivered again after the restart."""
        self.closing = True
        if self.task is not None:
            self.task.cancel()

    async def _run(self, requests: Any) -> None:
        state, context = self.state, self.context
        claims = await self.authorize("subscriber", requests)
        try:
            first = await next_request(requests)
        except asyncio.CancelledError:
            raise
        except Exception:
            await context.abort(grpc.StatusCode.ABORTED, "could not recv event from client")
        if first is None:
            return
        if first.WhichOneof("embed") != "subscription":
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, SUBSCRIPTION_FIRST)
        sub = first.subscription
        topics = state.registry.resolve(claims.project_id, list(sub.topics))
        if sub.HasField("query") and sub.query.query.strip():
            try:
                self.query = ensql.parse(sub.query.query)
            except ensql.QueryError as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"invalid query: {exc}")
            target = state.registry.by_name(claims.project_id, self.query.topic)
            if target is None:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "unknown topic in query")
            self.query_topic = target.id
            if all(t.id != target.id for t in topics):
                topics.append(target)
        if not topics:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, NO_TOPICS)
        self.topic_ids = [t.id for t in topics]
        self.batch_size = min(sub.batch_size, BATCH_MAX_EVENTS)
        if sub.window:
            self.window = min(sub.window, MAX_WINDOW)
        if sub.HasField("group") and (sub.group.id or sub.group.name):
            self.group = await self.groups.get(claims.project_id, sub.group)
            latest = sub.start == ensign_pb2.Subscription.LATEST
            await self.groups.begin(self.group, topics, latest)
        start = {t.id: t.offset for t in topics}
        ready = ensign_pb2.SubscribeReply(
            ready=ensign_pb2.StreamReady(
                client_id=sub.client_id,
                server_id=state.server_id,
                topics={t.name: t.id for t in topics},
                batch=ensign_pb2.BatchExtension(
                    max_events=BATCH_MAX_EVENTS, max_bytes=BATCH_MAX_BYTES
                ),
            )
        )
        await context.write(ready)
        reader = asyncio.create_task(self._read(requests))
        deliver = asyncio.create_task(self._deliver(start))
        if self.group is not None:
            self.group.waiters.add(self.wake)
        try:
            done, _ = await asyncio.wait({reader, deliver}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            for task in (reader, deliver):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if self.group is not None:
                self.group.waiters.discard(self.wake)
                self.group.release(self)

    # ---- acks from the client --------------------------------------------------------
    async def _read(self, requests: Any) -> None:
        while True:
            try:
                request = await next_request(requests)
            except asyncio.CancelledError:
                raise
            except Exception:
                return
            if request is None:
                return
            kind = request.WhichOneof("embed")
            group = self.group
            if group is None:
                continue
            if kind == "ack":
                group.ack(request.ack.id)
            elif kind == "acks":
                for rlid in request.acks.ids:
                    group.ack(rlid)
            elif kind == "nack":
                group.nack(request.nack.id)
            self.wake.set()

    # ---- delivery --------------------------------------------------------------------
    async def _deliver(self, start: dict[bytes, int]) -> None:
        waiter = self.state.broker.waiter()
        try:
            if self.group is None:
                if self.query is not None and self.query_topic is not None:
                    await self._replay(self.query_topic, start[self.query_topic])
                await self._tail(start, waiter)
            else:
                await self._consume(self.group, waiter)
        finally:
            self.state.broker.release(waiter)

    async def _replay(self, topic_id: bytes, upto: int) -> None:
        query = self.query
        assert query is not None
        skip = query.offset
        remaining = query.limit
        after = 0
        while remaining is None or remaining > 0:
            rows = await self.state.storage.read(
                functools.partial(
                    read_range, topic_id=topic_id, after=after, limit=_FETCH, upto=upto
                )
            )
            if not rows:
                return
            after = rows[-1].offset
            out: list[_Out] = []
            for row in rows:
                if row.is_duplicate or not query.matches(_row(row)):
                    continue
                if skip:
                    skip -= 1
                    continue
                out.append(_Out(row.offset, row.rlid, row.wrapper))
                if remaining is not None:
                    remaining -= 1
                    if remaining == 0:
                        break
            await self._send(out)

    async def _tail(self, cursors: dict[bytes, int], waiter: asyncio.Event) -> None:
        registry = self.state.registry
        while True:
            waiter.clear()
            progressed = False
            for topic_id in self.topic_ids:
                topic = registry.by_id.get(topic_id)
                after = cursors[topic_id]
                if topic is None or topic.offset <= after:
                    continue
                events = await self._fetch_range(topic_id, after, _FETCH)
                if not events:
                    continue
                cursors[topic_id] = events[-1].offset
                await self._send(events)
                progressed = True
            if not progressed:
                await waiter.wait()

    async def _consume(self, group: Group, waiter: asyncio.Event) -> None:
        registry = self.state.registry
        while True:
            waiter.clear()
            self.wake.clear()
            next_deadline = group.expire()
            progressed = False
            for topic_id in self.topic_ids:
                room = self.window - group.inflight_of(self)
                if room <= 0:
                    break
                topic = registry.by_id.get(topic_id)
                if topic is None:
                    continue
                offsets = group.take(topic_id, topic.offset, min(room, _FETCH), self)
                if not offsets:
                    continue
                events = await self._fetch_offsets(topic_id, offsets)
                for event in events:
                    group.deliver(topic_id, event.offset, event.rlid, self)
                found = {e.offset for e in events if isinstance(e, _Out)}
                for offset in offsets:
                    if offset not in found:
                        group.skip(topic_id, offset)
                await self._send(events)
                progressed = True
            if progressed:
                continue
            timeout = None
            if next_deadline is not None:
                timeout = max(0.0, next_deadline - time.monotonic()) + 0.01
            wakers = [asyncio.ensure_future(waiter.wait()), asyncio.ensure_future(self.wake.wait())]
            try:
                await asyncio.wait(wakers, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in wakers:
                    task.cancel()

    def _filter(self, topic_id: bytes, rows: list[StoredEvent]) -> list[_Out]:
        query = self.query
        check = query is not None and topic_id == self.query_topic
        return [
            _Out(r.offset, r.rlid, r.wrapper)
            for r in rows
            if not check or (query is not None and query.matches(_row(r)))
        ]

    async def _fetch_range(self, topic_id: bytes, after: int, limit: int) -> list[_Out]:
        if self.query is None or topic_id != self.query_topic:
            recent = self.state.broker.recent(topic_id, after, limit)
            if recent:
                return [_Out(*c) for c in recent]
        rows = await self.state.storage.read(lambda conn: read_range(conn, topic_id, after, limit))
        if not rows:
            return []
        filtered = self._filter(topic_id, rows)
        if not filtered:
            # Keep the cursor moving past events the query rejected.
            return [_Out(rows[-1].offset, b"", b"")]
        if filtered[-1].offset != rows[-1].offset:
            filtered.append(_Out(rows[-1].offset, b"", b""))
        return filtered

    async def _fetch_offsets(self, topic_id: bytes, offsets: list[int]) -> list[_Out]:
        contiguous = offsets[-1] - offsets[0] + 1 == len(offsets)
        if contiguous and (self.query is None or topic_id != self.query_topic):
            recent = self.state.broker.recent(topic_id, offsets[0] - 1, len(offsets))
            if recent is not None and len(recent) == len(offsets):
                return [_Out(*c) for c in recent]
        rows = await self.state.storage.read(lambda conn: read_offsets(conn, topic_id, offsets))
        return self._filter(topic_id, rows)

    async def _send(self, events: list[_Out]) -> None:
        write = self.context.write
        wrappers = [e.wrapper for e in events if e.wrapper]
        if not wrappers:
            return
        if self.batch_size <= 0:
            for wrapper in wrappers:
                await write(wirefmt.subscribe_event(wrapper))
            return
        chunk: list[bytes] = []
        size = 0
        for wrapper in wrappers:
            if chunk and (len(chunk) >= self.batch_size or size + len(wrapper) > _BATCH_BYTES):
                await write(wirefmt.subscribe_batch(chunk))
                chunk, size = [], 0
            chunk.append(wrapper)
            size += len(wrapper)
        if chunk:
            await write(wirefmt.subscribe_batch(chunk))


def _row(event: StoredEvent) -> ensql.EventRow:
    return ensql.row_from_wrapper(event.wrapper)

"""Consumer groups: durable acked positions, in-flight tracking and redelivery (PROTOCOL.md §4)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import logging
import sqlite3
import time
from dataclasses import dataclass, field

from django_ensign.proto.api.v1beta1 import groups_pb2
from django_ensign.server.storage import Storage, TopicRecord

log = logging.getLogger(__name__)

DEFAULT_DELIVERY_TIMEOUT = 30.0


@dataclass
class _Inflight:
    deadline: float
    owner: object
    rlid: bytes


@dataclass
class TopicCursor:
    """A group's progress through one topic."""

    acked: int
    next: int
    done: set[int] = field(default_factory=set)
    inflight: dict[int, _Inflight] = field(default_factory=dict)
    redeliver: list[int] = field(default_factory=list)

    def settle(self, offset: int) -> bool:
        """Mark ``offset`` acked; True if the durable watermark moved."""
        self.inflight.pop(offset, None)
        if offset <= self.acked:
            return False
        self.done.add(offset)
        moved = False
        while self.acked + 1 in self.done:
            self.acked += 1
            self.done.discard(self.acked)
            moved = True
        return moved


class Group:
    """One consumer group, shared by every stream that subscribes with it."""

    def __init__(
        self,
        manager: GroupManager,
        project_id: bytes,
        key: str,
        timeout: float,
        positions: dict[bytes, int],
    ) -> None:
        self.manager = manager
        self.project_id = project_id
        self.key = key
        self.timeout = timeout
        self.positions = positions
        self.cursors: dict[bytes, TopicCursor] = {}
        self.by_rlid: dict[bytes, tuple[bytes, int]] = {}
        self.waiters: set[asyncio.Event] = set()

    def has_position(self, topic_id: bytes) -> bool:
        """Whether the group has started on ``topic_id`` (durably, or in this process)."""
        return topic_id in self.positions or topic_id in self.cursors

    def start_after(self, topic_id: bytes, offset: int) -> None:
        """Start the group on a topic it has no position on with the next event after ``offset``."""
        self.cursors[topic_id] = TopicCursor(acked=offset, next=offset + 1)

    def cursor(self, topic_id: bytes) -> TopicCursor:
        """The group's cursor on a topic, starting after its durable position."""
        cursor = self.cursors.get(topic_id)
        if cursor is None:
            start = self.positions.get(topic_id, 0)
            cursor = self.cursors[topic_id] = TopicCursor(acked=start, next=start + 1)
        return cursor

    def take(self, topic_id: bytes, high: int, limit: int, owner: object) -> list[int]:
        """Up to ``limit`` offsets to deliver to ``owner``: redeliveries first, then new ones."""
        cursor = self.cursor(topic_id)
        out: list[int] = []
        while cursor.redeliver and len(out) < limit:
            offset = heapq.heappop(cursor.redeliver)
            if (
                offset > cursor.acked
                and offset not in cursor.done
                and offset not in cursor.inflight
            ):
                out.append(offset)
        while len(out) < limit and cursor.next <= high:
            out.append(cursor.next)
            cursor.next += 1
        return out

    def deliver(self, topic_id: bytes, offset: int, rlid: bytes, owner: object) -> None:
        """Record that an event went out and when it times out."""
        cursor = self.cursor(topic_id)
        cursor.inflight[offset] = _Inflight(time.monotonic() + self.timeout, owner, rlid)
        self.by_rlid[rlid] = (topic_id, offset)

    def skip(self, topic_id: bytes, offset: int) -> None:
        """Count an event the stream filtered out as handled."""
        if self.cursor(topic_id).settle(offset):
            self.manager.mark_dirty(self, topic_id)

    def ack(self, rlid: bytes) -> bool:
        """Settle a delivered event; False if it was not in flight."""
        where = self.by_rlid.pop(rlid, None)
        if where is None:
            return False
        topic_id, offset = where
        if self.cursor(topic_id).settle(offset):
            self.manager.mark_dirty(self, topic_id)
        return True

    def nack(self, rlid: bytes) -> bool:
        """Queue a delivered event for redelivery."""
        where = self.by_rlid.pop(rlid, None)
        if where is None:
            return False
        topic_id, offset = where
        cursor = self.cursor(topic_id)
        if cursor.inflight.pop(offset, None) is not None:
            heapq.heappush(cursor.redeliver, offset)
            self.wake()
        return True

    def release(self, owner: object) -> None:
        """A stream ended: everything it had in flight is delivered again."""
        self._requeue(lambda item: item.owner is owner)

    def expire(self) -> float | None:
        """Requeue timed-out deliveries; returns the next deadline, if any."""
        now = time.monotonic()
        self._requeue(lambda item: item.deadline <= now)
        deadlines = [i.deadline for c in self.cursors.values() for i in c.inflight.values()]
        return min(deadlines) if deadlines else None

    def _requeue(self, select: object) -> None:
        moved = False
        for cursor in self.cursors.values():
            gone = [o for o, item in cursor.inflight.items() if select(item)]  # type: ignore[operator]
            for offset in gone:
                item = cursor.inflight.pop(offset)
                self.by_rlid.pop(item.rlid, None)
                heapq.heappush(cursor.redeliver, offset)
                moved = True
        if moved:
            self.wake()

    def inflight_of(self, owner: object) -> int:
        """How many events ``owner`` holds unacked."""
        return sum(
            1 for c in self.cursors.values() for i in c.inflight.values() if i.owner is owner
        )

    def wake(self) -> None:
        """Wake every stream of the group."""
        for waiter in self.waiters:
            waiter.set()


#: (project id, group key, topic id, acked offset) of one row of ``group_offsets``.
_PositionRow = tuple[bytes, str, bytes, int]


def _save_positions(conn: sqlite3.Connection, rows: list[_PositionRow]) -> None:
    # MAX: a position only moves forward, whichever of two writes lands last.
    conn.executemany(
        "INSERT INTO group_offsets (project_id, group_key, topic_id, offset)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (project_id, group_key, topic_id)"
        " DO UPDATE SET offset = MAX(offset, excluded.offset)",
        rows,
    )


def group_key(group: groups_pb2.ConsumerGroup) -> str:
    """The stable key of a group: its id if given, else its name."""
    if group.id:
        return "id:" + group.id.hex()
    return "name:" + group.name


class GroupManager:
    """Loads groups on first use and writes their acked positions back in the background."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._groups: dict[tuple[bytes, str], Group] = {}
        self._locks: dict[tuple[bytes, str], asyncio.Lock] = {}
        self._dirty: dict[tuple[Group, bytes], None] = {}
        self._flusher: asyncio.Task[None] | None = None

    async def get(self, project_id: bytes, spec: groups_pb2.ConsumerGroup) -> Group:
        """The group for ``spec``, created durably on first use."""
        key = group_key(spec)
        ident = (project_id, key)
        lock = self._locks.setdefault(ident, asyncio.Lock())
        async with lock:
            group = self._groups.get(ident)
            if group is not None:
                if spec.HasField("delivery_timeout"):
                    group.timeout = self._timeout(spec)
                return group
            timeout = self._timeout(spec)
            timeout_ms = int(timeout * 1000)

            def load(conn: sqlite3.Connection) -> dict[bytes, int]:
                conn.execute(
                    "INSERT INTO groups (project_id, group_key, id, name, delivery_timeout_ms)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (project_id, group_key)"
                    " DO UPDATE SET delivery_timeout_ms = excluded.delivery_timeout_ms",
                    (project_id, key, spec.id, spec.name, timeout_ms),
                )
                rows = conn.execute(
                    "SELECT topic_id, offset FROM group_offsets"
                    " WHERE project_id = ? AND group_key = ?",
                    (project_id, key),
                ).fetchall()
                return {bytes(r[0]): int(r[1]) for r in rows}

            positions = await self.storage.write(load)
            group = Group(self, project_id, key, timeout, positions)
            self._groups[ident] = group
            return group

    async def begin(self, group: Group, topics: list[TopicRecord], latest: bool) -> None:
        """Fix where ``group`` starts on each topic, before a stream of it is ready.

        A topic the group has a position on resumes after it. Otherwise it starts at
        the topic's first event, or with ``latest`` at the topic's current end, which is
        saved before this returns so that a reconnect or a server restart resumes there.
        """
        async with self._locks[(group.project_id, group.key)]:
            # No await between reading an end and pinning the cursor: an event committed
            # meanwhile is past the end (so delivered), and another stream of the group
            # cannot start the topic elsewhere. Pinning the earliest cursors too means the
            # first stream of a new group to be ready decides where it starts.
            rows: list[_PositionRow] = []
            for topic in topics:
                if latest and not group.has_position(topic.id):
                    end = topic.offset
                    group.start_after(topic.id, end)
                    rows.append((group.project_id, group.key, topic.id, end))
                group.cursor(topic.id)
            if not rows:
                return
            try:
                await self.storage.write(functools.partial(_save_positions, rows=rows))
            except BaseException:  # also a cancelled handshake: the cursors stay pinned
                for row in rows:
                    self.mark_dirty(group, row[2])  # the background flush tries again
                raise
            for _, _, topic_id, end in rows:
                group.positions[topic_id] = max(group.positions.get(topic_id, 0), end)

    @staticmethod
    def _timeout(spec: groups_pb2.ConsumerGroup) -> float:
        if spec.HasField("delivery_timeout"):
            seconds = spec.delivery_timeout.seconds + spec.delivery_timeout.nanos / 1e9
            if seconds > 0:
                return seconds
        return DEFAULT_DELIVERY_TIMEOUT

    def mark_dirty(self, group: Group, topic_id: bytes) -> None:
        """Schedule a write of the group's position on ``topic_id``."""
        self._dirty[(group, topic_id)] = None
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(0.05)
        await self.flush()

    async def flush(self) -> None:
        """Write every changed position now."""
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, {}
        rows = [(g.project_id, g.key, tid, g.cursor(tid).acked) for g, tid in dirty]
        try:
            await self.storage.write(functools.partial(_save_positions, rows=rows))
        except Exception:
            log.exception("could not save consumer group positions")
            for group, tid in dirty:
                self._dirty[(group, tid)] = None
        for group, tid in dirty:
            group.positions[tid] = group.cursor(tid).acked

    def forget_topic(self, topic_id: bytes) -> None:
        """Drop cursors of a destroyed topic."""
        for group in self._groups.values():
            group.cursors.pop(topic_id, None)
            group.positions.pop(topic_id, None)

    async def close(self) -> None:
        """Flush positions before shutdown."""
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self.flush()

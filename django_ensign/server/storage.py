"""Durable storage for the embedded server: SQLite in WAL mode with one group-committing writer.

Every write runs on one writer thread. Event appends that arrive while a transaction is
being written wait in a queue and then share the next transaction and its fsync
(``synchronous=FULL``), so an ack is only ever sent for an event that is on disk. Reads use
their own connections from a small thread pool; WAL lets them run beside the writer.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from django_ensign.proto.api.v1beta1 import event_pb2, topic_pb2
from django_ensign.server import wirefmt
from django_ensign.wire import protowire

log = logging.getLogger(__name__)

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS projects (id BLOB PRIMARY KEY, created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS apikeys (
    client_id TEXT PRIMARY KEY,
    project_id BLOB NOT NULL,
    secret_hash TEXT NOT NULL,
    permissions TEXT NOT NULL,
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS topics (
    id BLOB PRIMARY KEY,
    seq INTEGER NOT NULL UNIQUE,
    project_id BLOB NOT NULL,
    name TEXT NOT NULL,
    state INTEGER NOT NULL,
    dedup BLOB NOT NULL,
    created INTEGER NOT NULL,
    modified INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS topics_name ON topics (project_id, name);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    rlid BLOB NOT NULL,
    wrapper BLOB NOT NULL,
    committed INTEGER NOT NULL,
    size INTEGER NOT NULL,
    is_duplicate INTEGER NOT NULL,
    dedup_key BLOB
);
CREATE INDEX IF NOT EXISTS events_dedup ON events (dedup_key, id)
    WHERE dedup_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS groups (
    project_id BLOB NOT NULL,
    group_key TEXT NOT NULL,
    id BLOB NOT NULL,
    name TEXT NOT NULL,
    delivery_timeout_ms INTEGER NOT NULL,
    PRIMARY KEY (project_id, group_key)
);
CREATE TABLE IF NOT EXISTS group_offsets (
    project_id BLOB NOT NULL,
    group_key TEXT NOT NULL,
    topic_id BLOB NOT NULL,
    offset INTEGER NOT NULL,
    PRIMARY KEY (project_id, group_key, topic_id)
);
"""

#: An event's row id is ``topic.seq << OFFSET_BITS | offset``: the table's own key keeps
#: each topic's events together and in offset order without a secondary index.
OFFSET_BITS = 40


def event_key(seq: int, offset: int) -> int:
    """The row id of a topic's event."""
    return (seq << OFFSET_BITS) | offset


#: The statement the writer inserts events with; rows come from ``event_row``.
INSERT_EVENT = (
    "INSERT INTO events (id, rlid, wrapper, committed, size, is_duplicate, dedup_key)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def event_row(
    seq: int,
    offset: int,
    rlid: bytes,
    wrapper: bytes,
    committed_ns: int,
    size: int,
    is_duplicate: bool = False,
    dedup_key: bytes | None = None,
) -> tuple[Any, ...]:
    """The parameters of ``INSERT_EVENT`` for one event (the writer builds the same inline)."""
    return (
        (seq << OFFSET_BITS) | offset,
        rlid,
        wrapper,
        committed_ns,
        size,
        int(is_duplicate),
        dedup_key,
    )


#: Deduplication strategies applied online (topic_pb2.Deduplication.Strategy values).
DEDUP_STRICT = 2
DEDUP_DATAGRAM = 3
DEDUP_KEY_GROUPED = 4
DEDUP_UNIQUE_KEY = 5


@dataclass
class TopicRecord:
    """One topic as the server keeps it in memory."""

    id: bytes
    seq: int
    project_id: bytes
    name: str
    state: int
    dedup: bytes
    created_ns: int
    modified_ns: int
    offset: int = 0


@dataclass(slots=True)
class PendingEvent:
    """An accepted event waiting for the writer: the wrapper without offset and commit time."""

    topic_id: bytes
    rlid: bytes
    wrapper: bytes
    event: bytes


#: A committed event as live subscribers get it: (offset, rlid, stored wrapper bytes).
Recent = tuple[int, bytes, bytes]
#: Called on the event loop with the commit time (None if the whole write failed) and the
#: indexes of the job's items that failed on their own (their topic was destroyed).
AppendCallback = Callable[[int | None, frozenset[int]], None]
#: Called on the event loop after each commit with the new events by topic id.
CommitListener = Callable[[dict[bytes, list[Recent]]], None]
_NO_FAILURES: frozenset[int] = frozenset()


@dataclass
class _AppendJob:
    items: list[PendingEvent]
    callback: AppendCallback


@dataclass
class _CallJob:
    fn: Callable[[sqlite3.Connection], Any]
    future: Future[Any]


@dataclass
class _DedupRule:
    strategy: int
    keys: list[str] = field(default_factory=list)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def _dedup_rule(dedup: bytes) -> _DedupRule | None:
    policy = topic_pb2.Deduplication.FromString(dedup)
    if policy.strategy in (DEDUP_STRICT, DEDUP_DATAGRAM, DEDUP_KEY_GROUPED, DEDUP_UNIQUE_KEY):
        return _DedupRule(policy.strategy, list(policy.keys))
    return None


def _dedup_key(rule: _DedupRule, event: event_pb2.Event) -> bytes:
    digest = hashlib.sha256()
    if rule.strategy == DEDUP_STRICT:
        meta = sorted(event.metadata.items())
        ty = event.type
        head = [meta, event.mimetype, ty.name, ty.major_version, ty.minor_version, ty.patch_version]
        digest.update(json.dumps(head).encode())
        digest.update(event.data)
    elif rule.strategy == DEDUP_DATAGRAM:
        digest.update(event.data)
    else:
        values = [event.metadata.get(key, "") for key in rule.keys]
        digest.update(json.dumps(values).encode())
        if rule.strategy == DEDUP_KEY_GROUPED:
            digest.update(event.data)
    return digest.digest()


class Storage:
    """The server's database: topics, keys, events and consumer-group positions."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = _connect(path)
        columns = {r[1] for r in self._conn.execute("PRAGMA table_info(topics)")}
        if columns and "seq" not in columns:
            self._conn.close()
            raise RuntimeError(
                f"{path} was written by an earlier development version of the server;"
                " start with an empty data directory"
            )
        self._conn.executescript(SCHEMA)
        self._queue: queue.SimpleQueue[_AppendJob | _CallJob | None] = queue.SimpleQueue()
        self._offsets: dict[bytes, int] = {}
        self._seqs: dict[bytes, int] = {}
        self._dedup: dict[bytes, _DedupRule] = {}
        self._local = threading.local()
        self._readers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="ensign-read")
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.listeners: list[CommitListener] = []
        self._closed = False

    # ---- lifecycle -------------------------------------------------------------------
    def load_topics(self) -> list[TopicRecord]:
        """Every topic with its last offset; also primes the writer's offset counters."""
        rows = self._conn.execute(
            "SELECT t.id, t.seq, t.project_id, t.name, t.state, t.dedup, t.created, t.modified,"
            " (SELECT MAX(e.id) FROM events e WHERE e.id > t.seq << 40"
            "  AND e.id < (t.seq + 1) << 40) FROM topics t"
        ).fetchall()
        topics = [
            TopicRecord(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                r[6],
                r[7],
                (r[8] & ((1 << OFFSET_BITS) - 1)) if r[8] else 0,
            )
            for r in rows
        ]
        for topic in topics:
            self._offsets[topic.id] = topic.offset
            self._seqs[topic.id] = topic.seq
            rule = _dedup_rule(topic.dedup)
            if rule:
                self._dedup[topic.id] = rule
        return topics

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the writer thread; results are delivered on ``loop``."""
        self._loop = loop
        self._thread = threading.Thread(target=self._writer, name="ensign-writer", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Write everything queued, then stop the writer and close the database."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
        self._readers.shutdown(wait=True)
        self._conn.close()

    # ---- synchronous access (before start, or from the CLI) --------------------------
    def execute_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in a transaction on the calling thread (only before ``start``)."""
        return self._transaction(self._conn, fn)

    @staticmethod
    def _transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    # ---- async API -------------------------------------------------------------------
    def append(self, items: list[PendingEvent], callback: AppendCallback) -> None:
        """Queue events for the next group commit; ``callback`` gets their outcomes in order."""
        self._queue.put(_AppendJob(items, callback))

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the writer thread inside its own transaction."""
        future: Future[T] = Future()
        self._queue.put(_CallJob(fn, future))
        return await asyncio.wrap_future(future)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` with a read connection on the reader pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._run_read, fn)

    def _run_read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path)
            self._local.conn = conn
        return fn(conn)

    def set_dedup(self, topic_id: bytes, dedup: bytes) -> None:
        """Apply a deduplication policy to events written from now on (writer thread only)."""
        rule = _dedup_rule(dedup)
        if rule:
            self._dedup[topic_id] = rule
        else:
            self._dedup.pop(topic_id, None)

    def register_topic(self, topic_id: bytes, seq: int) -> None:
        """Make a new topic writable (writer thread only)."""
        self._offsets.setdefault(topic_id, 0)
        self._seqs[topic_id] = seq

    def forget_topic(self, topic_id: bytes) -> None:
        """Stop accepting events for a destroyed topic (writer thread only)."""
        self._offsets.pop(topic_id, None)
        self._seqs.pop(topic_id, None)
        self._dedup.pop(topic_id, None)

    # ---- writer thread ---------------------------------------------------------------
    def _writer(self) -> None:
        stop = False
        while not stop:
            jobs = [self._queue.get()]
            while True:
                try:
                    jobs.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            appends: list[_AppendJob] = []
            for job in jobs:
                if job is None:
                    stop = True
                elif isinstance(job, _AppendJob):
                    appends.append(job)
                else:
                    if appends:
                        self._commit_events(appends)
                        appends = []
                    self._run_call(job)
            if appends:
                self._commit_events(appends)

    def _run_call(self, job: _CallJob) -> None:
        try:
            result = self._transaction(self._conn, job.fn)
        except BaseException as exc:
            job.future.set_exception(exc)
        else:
            job.future.set_result(result)

    def _commit_events(self, jobs: list[_AppendJob]) -> None:
        now = time.time_ns()
        stamp = wirefmt.field_bytes(15, wirefmt.timestamp_explicit(now))
        varint = protowire.varint
        offsets = self._offsets
        saved = dict(offsets)
        seqs = self._seqs
        dedup = self._dedup
        rows: list[tuple[Any, ...]] = []
        failures: list[frozenset[int]] = []
        by_topic: dict[bytes, list[Recent]] = {}
        seen_keys: dict[tuple[bytes, bytes], bytes] = {}
        committed: int | None = now
        try:
            for job in jobs:
                failed: set[int] | None = None
                for index, item in enumerate(job.items):
                    topic_id = item.topic_id
                    seq = seqs.get(topic_id)
                    if seq is None:
                        if failed is None:
                            failed = set()
                        failed.add(index)
                        continue
                    offset = offsets[topic_id] + 1
                    offsets[topic_id] = offset
                    wrapper = item.wrapper + b"\x18" + varint(offset) + stamp
                    dedup_key: bytes | None = None
                    is_dup = 0
                    if dedup:
                        rule = dedup.get(topic_id)
                        if rule is not None:
                            dedup_key, original = self._find_duplicate(rule, item, seen_keys)
                            if original is not None:
                                is_dup = 1
                                wrapper += wirefmt.duplicate_suffix(original)
                    rows.append(
                        (
                            (seq << OFFSET_BITS) | offset,
                            item.rlid,
                            wrapper,
                            now,
                            len(item.event),
                            is_dup,
                            dedup_key,
                        )
                    )
                    recent = by_topic.get(topic_id)
                    if recent is None:
                        recent = by_topic[topic_id] = []
                    recent.append((offset, item.rlid, wrapper))
                failures.append(frozenset(failed) if failed else _NO_FAILURES)
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(INSERT_EVENT, rows)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except Exception:
            log.exception("event write failed; nacking %d events", len(rows))
            offsets.clear()
            offsets.update(saved)
            committed = None
            failures = [_NO_FAILURES] * len(jobs)
            by_topic = {}
        if self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._deliver, jobs, committed, failures, by_topic)
            except RuntimeError:
                log.warning("event loop closed before %d outcomes were delivered", len(jobs))

    def _find_duplicate(
        self, rule: _DedupRule, item: PendingEvent, seen: dict[tuple[bytes, bytes], bytes]
    ) -> tuple[bytes, bytes | None]:
        """The event's dedup key and the RLID of an earlier equal event, if any."""
        try:
            event = event_pb2.Event.FromString(item.event)
        except Exception:
            event = event_pb2.Event()
        key = _dedup_key(rule, event)
        original = seen.get((item.topic_id, key))
        if original is None:
            seq = self._seqs[item.topic_id]
            row = self._conn.execute(
                "SELECT rlid FROM events WHERE dedup_key = ? AND id > ? AND id < ?"
                " AND is_duplicate = 0 LIMIT 1",
                (key, seq << OFFSET_BITS, (seq + 1) << OFFSET_BITS),
            ).fetchone()
            original = bytes(row[0]) if row else None
        if original is None:
            seen[(item.topic_id, key)] = item.rlid
        return key, original

    def _deliver(
        self,
        jobs: list[_AppendJob],
        committed: int | None,
        failures: list[frozenset[int]],
        by_topic: dict[bytes, list[Recent]],
    ) -> None:
        for job, failed in zip(jobs, failures, strict=True):
            try:
                job.callback(committed, failed)
            except Exception:
                log.exception("append callback failed")
        if by_topic:
            for listener in self.listeners:
                listener(by_topic)


@dataclass
class StoredEvent:
    """A stored event as the readers see it."""

    offset: int
    rlid: bytes
    wrapper: bytes
    is_duplicate: bool


_EVENT_COLUMNS = "id, rlid, wrapper, is_duplicate"
_OFFSET_MASK = (1 << OFFSET_BITS) - 1


def _stored(row: tuple[Any, ...]) -> StoredEvent:
    return StoredEvent(row[0] & _OFFSET_MASK, bytes(row[1]), bytes(row[2]), bool(row[3]))


def topic_seq(conn: sqlite3.Connection, topic_id: bytes) -> int | None:
    """The storage number of a topic, None if it no longer exists."""
    row = conn.execute("SELECT seq FROM topics WHERE id = ?", (topic_id,)).fetchone()
    return int(row[0]) if row else None


def read_range(
    conn: sqlite3.Connection, topic_id: bytes, after: int, limit: int, upto: int | None = None
) -> list[StoredEvent]:
    """Up to ``limit`` events of a topic with ``after < offset [<= upto]``, in offset order."""
    seq = topic_seq(conn, topic_id)
    if seq is None:
        return []
    last = _OFFSET_MASK if upto is None else upto
    rows = conn.execute(
        f"SELECT {_EVENT_COLUMNS} FROM events WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
        (event_key(seq, after), event_key(seq, last), limit),
    ).fetchall()
    return [_stored(r) for r in rows]


def read_offsets(
    conn: sqlite3.Connection, topic_id: bytes, offsets: list[int]
) -> list[StoredEvent]:
    """The events of a topic at the given offsets, in offset order."""
    seq = topic_seq(conn, topic_id)
    if seq is None:
        return []
    out: list[StoredEvent] = []
    keys = sorted(event_key(seq, offset) for offset in offsets)
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE id IN ({marks}) ORDER BY id", chunk
        ).fetchall()
        out.extend(_stored(r) for r in rows)
    return out

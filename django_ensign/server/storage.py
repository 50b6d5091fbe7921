"""Durable storage for the embedded server: SQLite in WAL mode with one group-committing writer.

Every write runs on one writer thread. Event appends that arrive while a transaction is
being written wait in a queue and then share the next transaction and its fsync
(``synchronous=FULL``), so an ack is only ever sent for an event that is on disk. Reads use
their own connections from a small thread pool; WAL lets them run beside the writer.
"""

from __future__ import annotations

import asyncio
import functools
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
from itertools import repeat
from pathlib import Path
from typing import Any, TypeVar

from django_ensign.proto.api.v1beta1 import event_pb2, topic_pb2
from django_ensign.server import wirefmt

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


_INSERT_INTO = (
    "INSERT INTO events (id, rlid, wrapper, committed, size, is_duplicate, dedup_key) VALUES "
)
#: Parameters per event row.
EVENT_FIELDS = 7
#: Most rows per INSERT statement. The sqlite3 module releases the GIL around each
#: statement and the writer then waits for the event loop to hand it back, so a
#: thousand-event batch should take few statements; SQLite allows 32,766 variables from
#: 3.32 on, older builds 999.
ROWS_PER_INSERT = 1024 if sqlite3.sqlite_version_info >= (3, 32, 0) else 128
#: Statements hold a multiple of this many rows, or a power of two below it: a thousand
#: rows take three statements, and a writer keeps at most 22 prepared (a prepared
#: statement of 1,000 rows takes about 0.7 MiB).
ROW_STEP = 64


@functools.cache
def _insert_sql(rows: int) -> str:
    return _INSERT_INTO + ",".join(["(?, ?, ?, ?, ?, ?, ?)"] * rows)


#: The one-row statement (``insert_rows`` uses multi-row forms of it).
INSERT_EVENT = _insert_sql(1)


def insert_rows(conn: sqlite3.Connection, params: list[Any]) -> None:
    """Insert event rows given as one flat list, ``EVENT_FIELDS`` parameters per row.

    Multi-row statements run many rows per ``sqlite3_step``: the sqlite3 module releases
    the GIL around each step, so ``executemany`` hands the GIL back and forth with the
    event loop once per row, which costs more than the insert itself.
    """
    start, left = 0, len(params) // EVENT_FIELDS
    while left:
        if left >= ROW_STEP:
            rows = min(left, ROWS_PER_INSERT) // ROW_STEP * ROW_STEP
        else:
            rows = 1 << (left.bit_length() - 1)
        width = rows * EVENT_FIELDS
        conn.execute(_insert_sql(rows), params[start : start + width])
        start += width
        left -= rows


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
    """One event's parameters for ``insert_rows``, as the writer builds them inline.

    Blobs are passed as bytearray: the sqlite3 module binds bytes only after a failed
    adapter lookup that costs more than a copy.
    """
    return (
        (seq << OFFSET_BITS) | offset,
        bytearray(rlid),
        bytearray(wrapper),
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


#: An accepted event waiting for the writer: (topic id, 10-byte RLID, the client's wrapper
#: as it will be stored, size of its Event). A tuple, as one is built per event.
PendingEvent = tuple[bytes, bytes, bytes, int]
#: EventWrapper ``id`` (1) holding a 10-byte RLID.
_ID_FIELD = b"\x0a\x0a"


#: A committed event as live subscribers get it: (offset, rlid, stored wrapper bytes).
Recent = tuple[int, bytes, bytes]
#: Called on the event loop with the commit time (None if the whole write failed) and the
#: indexes of the job's items that failed on their own (their topic was destroyed).
AppendCallback = Callable[[int | None, frozenset[int]], None]
#: Called on the event loop after each commit with the new events by topic id.
CommitListener = Callable[[dict[bytes, list[Recent]]], None]
_NO_FAILURES: frozenset[int] = frozenset()


#: Events to append, the callback that gets their outcomes, and the bytes stored after
#: each event's id (a tuple: one is queued per request).
_AppendJob = tuple[list[PendingEvent], AppendCallback, bytes]


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


#: Fewest events in a request for ``_run_rows`` to build its rows.
_COLUMN_MIN = 8
#: A commit costs about 100 µs of CPU (mostly the WAL write and fsync) whatever it holds.
#: When several small appends met in one commit and more came while it was written,
#: streams are sending event by event, so the writer waits for the next ones to share the
#: next commit. It waits in steps of ``GATHER_STEP`` while each step brings at least
#: ``GATHER_PER_STEP`` appends, for ``GATHER_MAX`` at most: a stream of thousands of
#: events a second fills commits of 25 or more (about 4 with no wait), and a slower one
#: waits one step. An append that finds the writer idle is written at once.
GATHER_STEP = 0.001
GATHER_MAX = 0.008
GATHER_PER_STEP = 2
#: Appends holding this many events already share their commit's cost well.
GATHER_BELOW = 256


def _should_gather(jobs: list[_AppendJob | _CallJob | None]) -> bool:
    """Whether the next commit should wait for company (see ``GATHER_STEP``)."""
    appends = [job[0] for job in jobs if isinstance(job, tuple)]
    return len(appends) > 1 and sum(map(len, appends)) < GATHER_BELOW


def _one_topic(
    items: list[PendingEvent],
) -> tuple[bytes, tuple[bytes, ...], tuple[bytes, ...], tuple[int, ...]] | None:
    """The topic and the columns of ``items`` if they all belong to one topic."""
    topics, rlids, wrappers, sizes = zip(*items, strict=True)
    if topics.count(topics[0]) != len(topics):
        return None
    return topics[0], rlids, wrappers, sizes


def _run_rows(
    params: list[Any],
    recent: list[Recent],
    rlids: tuple[bytes, ...],
    wrappers: tuple[bytes, ...],
    sizes: tuple[int, ...],
    suffix: bytes,
    stamp: bytes,
    now: int,
    base: int,
    start: int,
) -> None:
    """Add the rows and live tuples of one topic's events at offsets ``start`` onwards.

    What ``_commit_events`` does row by row, done column by column so that the
    iteration runs in C: a batch of a thousand events costs a handful of bytecodes.
    """
    count = len(rlids)
    offsets = range(start, start + count)
    stored = list(
        map(
            b"".join,
            zip(
                wrappers,
                repeat(_ID_FIELD),
                rlids,
                repeat(suffix),
                wirefmt.offset_fields(start, count),
                repeat(stamp),
            ),
        )
    )
    block: list[Any] = [None] * (EVENT_FIELDS * count)
    block[0::EVENT_FIELDS] = range(base + start, base + start + count)
    block[1::EVENT_FIELDS] = map(bytearray, rlids)
    block[2::EVENT_FIELDS] = map(bytearray, stored)
    block[3::EVENT_FIELDS] = repeat(now, count)
    block[4::EVENT_FIELDS] = sizes
    block[5::EVENT_FIELDS] = repeat(0, count)
    params += block
    recent += zip(offsets, rlids, stored, strict=True)


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
    def append(
        self, items: list[PendingEvent], callback: AppendCallback, suffix: bytes = b""
    ) -> None:
        """Queue events for the next group commit; ``callback`` gets their outcomes in order.

        Each event is stored as its wrapper followed by its ``id``, ``suffix`` (fields
        the caller sets on every event, such as the publisher), ``offset`` and
        ``committed``: later occurrences of a field replace earlier ones.
        """
        self._queue.put((items, callback, suffix))

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
        gather = False
        while not stop:
            try:
                jobs = [self._queue.get_nowait()]
            except queue.Empty:
                # Nothing came during the last commit: whoever is writing waits for its
                # acks, so waiting for company would only delay them.
                jobs = [self._queue.get()]
            else:
                if gather:
                    self._linger()
            while True:
                try:
                    jobs.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            gather = _should_gather(jobs)
            appends: list[_AppendJob] = []
            for job in jobs:
                if job is None:
                    stop = True
                elif isinstance(job, tuple):
                    appends.append(job)
                else:
                    if appends:
                        self._commit_events(appends)
                        appends = []
                    self._run_call(job)
            if appends:
                self._commit_events(appends)

    def _linger(self) -> None:
        """Wait while appends keep coming fast, up to ``GATHER_MAX``."""
        waited, queued = 0.0, self._queue.qsize()
        while waited < GATHER_MAX:
            time.sleep(GATHER_STEP)
            waited += GATHER_STEP
            now_queued = self._queue.qsize()
            # Each queued append holds at least one event, so this many are enough.
            if now_queued - queued < GATHER_PER_STEP or now_queued >= GATHER_BELOW:
                return
            queued = now_queued

    def _run_call(self, job: _CallJob) -> None:
        # Marked running first, so a caller cancelled from now on cannot cancel the
        # future under us (setting a cancelled future's result raises and would end the
        # writer thread). One cancelled before still has its work done, unanswered.
        wanted = job.future.set_running_or_notify_cancel()
        try:
            result = self._transaction(self._conn, job.fn)
        except BaseException as exc:
            if wanted:
                job.future.set_exception(exc)
        else:
            if wanted:
                job.future.set_result(result)

    def _commit_events(self, jobs: list[_AppendJob]) -> None:
        now = time.time_ns()
        stamp = wirefmt.field_bytes(15, wirefmt.timestamp_explicit(now))
        offset_field = wirefmt.offset_field
        offsets = self._offsets
        saved = dict(offsets)
        seqs = self._seqs
        dedup = self._dedup
        params: list[Any] = []
        failures: list[frozenset[int]] = []
        by_topic: dict[bytes, list[Recent]] = {}
        seen_keys: dict[tuple[bytes, bytes], bytes] = {}
        committed: int | None = now
        # Events mostly come in runs of one topic: its counters are looked up once per run.
        topic_id = b""
        offset = base = 0
        recent: list[Recent] = []
        rule: _DedupRule | None = None
        try:
            for items, _, suffix in jobs:
                if not items:
                    failures.append(_NO_FAILURES)
                    continue
                # Column-wise only pays off past a few events; single events take the loop.
                columns = _one_topic(items) if len(items) >= _COLUMN_MIN else None
                if columns is not None and columns[0] in seqs and columns[0] not in dedup:
                    if columns[0] != topic_id:
                        if topic_id:
                            offsets[topic_id] = offset
                        topic_id = columns[0]
                        offset = offsets[topic_id]
                        base = seqs[topic_id] << OFFSET_BITS
                        recent = by_topic.setdefault(topic_id, [])
                        rule = None
                    start = offset + 1
                    offset += len(items)
                    _, rlids, wrappers, sizes = columns
                    _run_rows(
                        params, recent, rlids, wrappers, sizes, suffix, stamp, now, base, start
                    )
                    failures.append(_NO_FAILURES)
                    continue
                failed: set[int] | None = None
                for index, (item_topic, rlid, wrapper, size) in enumerate(items):
                    if item_topic != topic_id:
                        if topic_id:
                            offsets[topic_id] = offset
                        seq = seqs.get(item_topic)
                        if seq is None:
                            if failed is None:
                                failed = set()
                            failed.add(index)
                            topic_id = b""
                            continue
                        topic_id = item_topic
                        offset = offsets[topic_id]
                        base = seq << OFFSET_BITS
                        recent = by_topic.setdefault(topic_id, [])
                        rule = dedup.get(topic_id) if dedup else None
                    offset += 1
                    stored = b"".join(
                        (wrapper, _ID_FIELD, rlid, suffix, offset_field(offset), stamp)
                    )
                    dedup_key = original = None
                    if rule is not None:
                        dedup_key, original = self._find_duplicate(
                            rule, topic_id, rlid, wrapper, seen_keys
                        )
                        if original is not None:
                            stored += wirefmt.duplicate_suffix(original)
                    params += (
                        base | offset,
                        bytearray(rlid),
                        bytearray(stored),
                        now,
                        size,
                        int(original is not None),
                        dedup_key,
                    )
                    recent.append((offset, rlid, stored))
                failures.append(frozenset(failed) if failed else _NO_FAILURES)
            if topic_id:
                offsets[topic_id] = offset
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                insert_rows(conn, params)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except Exception:
            log.exception("event write failed; nacking %d events", len(params) // EVENT_FIELDS)
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
        self,
        rule: _DedupRule,
        topic_id: bytes,
        rlid: bytes,
        wrapper: bytes,
        seen: dict[tuple[bytes, bytes], bytes],
    ) -> tuple[bytes, bytes | None]:
        """The event's dedup key and the RLID of an earlier equal event, if any."""
        try:
            event = event_pb2.Event.FromString(event_pb2.EventWrapper.FromString(wrapper).event)
        except Exception:
            event = event_pb2.Event()
        key = _dedup_key(rule, event)
        original = seen.get((topic_id, key))
        if original is None:
            seq = self._seqs[topic_id]
            row = self._conn.execute(
                "SELECT rlid FROM events WHERE dedup_key = ? AND id > ? AND id < ?"
                " AND is_duplicate = 0 LIMIT 1",
                (key, seq << OFFSET_BITS, (seq + 1) << OFFSET_BITS),
            ).fetchone()
            original = bytes(row[0]) if row else None
        if original is None:
            seen[(topic_id, key)] = rlid
        return key, original

    def _deliver(
        self,
        jobs: list[_AppendJob],
        committed: int | None,
        failures: list[frozenset[int]],
        by_topic: dict[bytes, list[Recent]],
    ) -> None:
        for (_, callback, _), failed in zip(jobs, failures, strict=True):
            try:
                callback(committed, failed)
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

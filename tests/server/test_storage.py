"""The storage module directly: group commit, per-topic offsets, reopening, failed writes."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from pathlib import Path

from django_ensign.proto.api.v1beta1.event_pb2 import EventWrapper
from django_ensign.server.storage import (
    PendingEvent,
    Recent,
    Storage,
    event_row,
    insert_rows,
    read_range,
)
from django_ensign.wire import ids


def make_topic(storage: Storage, seq: int) -> bytes:
    topic_id = ids.new_ulid()

    def insert(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO topics (id, seq, project_id, name, state, dedup, created, modified)"
            " VALUES (?, ?, ?, ?, 1, x'', 0, 0)",
            (topic_id, seq, b"p" * 16, f"t{seq}"),
        )
        storage.register_topic(topic_id, seq)

    storage.execute_sync(insert)
    return topic_id


def pending(topic_id: bytes, n: int) -> list[PendingEvent]:
    return [(topic_id, ids.new_ulid()[:10], b"\x12\x10" + topic_id, i) for i in range(n)]


Result = tuple[int | None, frozenset[int]]


async def test_queued_appends_share_one_commit_and_get_per_topic_offsets(
    tmp_path: Path,
) -> None:
    storage = Storage(tmp_path / "db")
    storage.load_topics()
    a, b = make_topic(storage, 1), make_topic(storage, 2)
    results: list[Result] = []
    committed: list[dict[bytes, list[Recent]]] = []
    storage.listeners.append(committed.append)
    done = asyncio.Event()

    def collect(at: int | None, failed: frozenset[int]) -> None:
        results.append((at, failed))
        if len(results) == 3:
            done.set()

    # Queued before the writer starts, so the writer finds all three at once.
    storage.append(pending(a, 2), collect)
    storage.append(pending(b, 1), collect)
    storage.append(pending(a, 1), collect)
    storage.start(asyncio.get_running_loop())
    await done.wait()
    assert len({at for at, _ in results}) == 1
    assert all(at is not None and not failed for at, failed in results)
    (by_topic,) = committed
    assert [offset for offset, _, _ in by_topic[a]] == [1, 2, 3]
    assert [offset for offset, _, _ in by_topic[b]] == [1]
    storage.close()

    reopened = Storage(tmp_path / "db")
    topics = {t.id: t.offset for t in reopened.load_topics()}
    assert topics == {a: 3, b: 1}
    reopened.start(asyncio.get_running_loop())
    stored = await reopened.read(lambda conn: read_range(conn, a, 0, 10))
    assert [e.offset for e in stored] == [1, 2, 3]
    reopened.close()


async def test_a_write_whose_caller_gave_up_is_done_and_the_writer_goes_on(
    tmp_path: Path,
) -> None:
    storage = Storage(tmp_path / "db")
    storage.load_topics()
    storage.start(asyncio.get_running_loop())
    busy, release = threading.Event(), threading.Event()

    def hold(conn: sqlite3.Connection) -> None:
        busy.set()
        release.wait(10)

    def mark(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO meta (key, value) VALUES ('abandoned', 'written')")

    held = asyncio.ensure_future(storage.write(hold))
    await asyncio.to_thread(busy.wait, 10)
    abandoned = asyncio.ensure_future(storage.write(mark))
    await asyncio.sleep(0)  # lets the write queue its job behind the held one
    abandoned.cancel()  # as a Subscribe handshake cancelled by its client
    with contextlib.suppress(asyncio.CancelledError):
        await abandoned
    release.set()
    await held
    value = await asyncio.wait_for(
        storage.write(
            lambda conn: conn.execute("SELECT value FROM meta WHERE key = 'abandoned'").fetchone()
        ),
        10,
    )
    assert value == ("written",)
    storage.close()


def future_result() -> tuple[asyncio.Future[Result], object]:
    future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
    return future, lambda at, failed: future.set_result((at, failed))


async def test_events_for_an_unregistered_topic_fail_alone(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "db")
    storage.load_topics()
    a = make_topic(storage, 1)
    storage.start(asyncio.get_running_loop())
    got, callback = future_result()
    storage.append(pending(ids.new_ulid(), 1) + pending(a, 1), callback)  # type: ignore[arg-type]
    at, failed = await got
    assert at is not None
    assert failed == {0}
    stored = await storage.read(lambda conn: read_range(conn, a, 0, 10))
    assert [e.offset for e in stored] == [1]
    storage.close()


async def test_a_failed_write_fails_its_events_and_keeps_offsets(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "db")
    storage.load_topics()
    a = make_topic(storage, 1)
    storage.start(asyncio.get_running_loop())
    # Another connection holding the write lock makes the writer's transaction fail.
    blocker = sqlite3.connect(tmp_path / "db", isolation_level=None)
    blocker.execute("PRAGMA busy_timeout=0")
    blocker.execute("BEGIN EXCLUSIVE")
    storage._conn.execute("PRAGMA busy_timeout=50")
    got, callback = future_result()
    storage.append(pending(a, 2), callback)  # type: ignore[arg-type]
    assert (await got)[0] is None
    blocker.execute("ROLLBACK")
    blocker.close()
    again, callback = future_result()
    storage.append(pending(a, 1), callback)  # type: ignore[arg-type]
    assert (await again)[0] is not None
    stored = await storage.read(lambda conn: read_range(conn, a, 0, 10))
    assert [e.offset for e in stored] == [1]
    storage.close()


async def test_batched_events_carry_their_offsets_across_varint_boundaries(
    tmp_path: Path,
) -> None:
    storage = Storage(tmp_path / "db")
    storage.load_topics()
    a = make_topic(storage, 1)
    storage.close()
    # A topic already past the three-byte varints: its next offsets take four bytes.
    last = (1 << 21) - 200
    reopened = Storage(tmp_path / "db")
    reopened.execute_sync(
        lambda conn: insert_rows(conn, list(event_row(1, last, b"r" * 10, b"", 0, 0)))
    )
    reopened.load_topics()
    reopened.start(asyncio.get_running_loop())
    for count in (300, 1):
        got, callback = future_result()
        reopened.append(pending(a, count), callback)  # type: ignore[arg-type]
        assert (await got)[0] is not None
    stored = await reopened.read(lambda conn: read_range(conn, a, last, 1000))
    offsets = [EventWrapper.FromString(e.wrapper).offset for e in stored]
    assert offsets == [e.offset for e in stored] == list(range(last + 1, last + 302))
    reopened.close()

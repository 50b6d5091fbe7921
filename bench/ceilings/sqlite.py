"""Ceiling: a bare SQLite insert loop of the server's event rows, WAL, synchronous=FULL.

The rows, the table (with its indexes) and the statements are the embedded server's own
(``storage.SCHEMA``, ``storage.event_row``, ``storage.insert_rows``); transactions
hold ``batch`` rows each, as its group commit would when the stream keeps it busy.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import frames, stats
from django_ensign.server import storage

#: Rows per transaction (one fsync each).
BATCH = 1000


@dataclass(frozen=True)
class InsertRun:
    """Rows inserted, transactions committed, elapsed seconds."""

    rows: int
    transactions: int
    seconds: float

    @property
    def rate(self) -> float:
        """Rows per second."""
        return stats.rate(self.rows, self.seconds)


def measure(rows: int, batch: int = BATCH, directory: Path | None = None) -> InsertRun:
    """Insert ``rows`` event rows, ``batch`` per durable transaction, into a fresh database."""
    with tempfile.TemporaryDirectory(dir=directory, prefix="bench-sqlite-") as tmp:
        conn = sqlite3.connect(Path(tmp) / "events.sqlite3", isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(storage.SCHEMA)
            topic_id = b"\x01" * 16
            splicer = frames.Frames(topic_id, frames.event_bytes()).splicer()
            size = len(frames.event_bytes())
            transactions = 0
            started = time.perf_counter()
            for start in range(0, rows, batch):
                now = time.time_ns()
                params: list[object] = []
                for offset in range(start, min(rows, start + batch)):
                    params += storage.event_row(
                        1,
                        offset + 1,
                        offset.to_bytes(10, "big"),
                        splicer.wrapper(offset),
                        now,
                        size,
                    )
                conn.execute("BEGIN IMMEDIATE")
                storage.insert_rows(conn, params)
                conn.execute("COMMIT")
                transactions += 1
            seconds = time.perf_counter() - started
        finally:
            conn.close()
    return InsertRun(rows=rows, transactions=transactions, seconds=seconds)

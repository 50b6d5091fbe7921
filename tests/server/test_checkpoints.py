"""Background WAL checkpoints: a writer that never checkpoints itself keeps a bounded WAL."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from django_ensign.server.checkpoints import Checkpointer

PAGE = 4096
ROW = b"x" * 3000
ROWS_PER_COMMIT = 4
COMMITS = 400


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def test_a_steady_stream_of_commits_keeps_the_wal_bounded_and_loses_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "db"
    writer = connect(path)
    writer.execute("CREATE TABLE t (v BLOB)")
    checkpoints = Checkpointer(lambda: connect(path), checkpoint_bytes=8 * PAGE, wal_cap_frames=64)
    checkpoints.start(writer)
    for _ in range(COMMITS):
        if checkpoints.wal_full:
            checkpoints.catch_up(writer)
        writer.execute("BEGIN IMMEDIATE")
        writer.executemany("INSERT INTO t VALUES (?)", [(ROW,)] * ROWS_PER_COMMIT)
        writer.execute("COMMIT")
        checkpoints.written(len(ROW) * ROWS_PER_COMMIT)
    checkpoints.close()

    # Without checkpoints every row would still be in the WAL: at least a page each.
    unbounded = COMMITS * ROWS_PER_COMMIT * PAGE
    assert path.with_name("db-wal").stat().st_size < unbounded / 4
    # Everything is in the database file itself once the WAL is thrown away.
    writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert path.with_name("db-wal").stat().st_size == 0
    writer.close()
    reader = sqlite3.connect(path)
    assert reader.execute("SELECT count(*) FROM t").fetchone() == (COMMITS * ROWS_PER_COMMIT,)
    reader.close()

"""What PostgreSQL spends on a run: its backends' CPU (from ``/proc``) and the WAL written.

The backends are the server processes serving the run's own connections, found by
``pg_backend_pid()``. Their CPU can only be read when PostgreSQL runs on this machine
(it does here: loopback); elsewhere the figures are None and the tables print "-".
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_TICKS = os.sysconf("SC_CLK_TCK")


def backend_pid(conn: Any) -> int:
    """The PostgreSQL process serving ``conn``."""
    return int(conn.execute("SELECT pg_backend_pid()").fetchone()[0])


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far, or None if it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            # Fields after the command name (which may hold spaces) closed by ")".
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS


def wal_position(conn: Any) -> int:
    """The current WAL insert position, in bytes."""
    return int(conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()[0])


def row_bytes(conn: Any, table: str) -> float:
    """The average stored size of a row of ``table``."""
    found = conn.execute(f"SELECT avg(pg_column_size(t.*)) FROM {table} t").fetchone()[0]
    return float(found or 0.0)


@dataclass
class Cost:
    """CPU of a run's backends and WAL it wrote; read before and after with :meth:`sample`."""

    pids: list[int]
    cpu_start: float | None = None
    cpu_end: float | None = None
    wal_start: int = 0
    wal_end: int = 0

    def cpu(self) -> float | None:
        """The backends' CPU seconds now (None when any cannot be read)."""
        readings = [cpu_seconds(pid) for pid in self.pids]
        return None if any(r is None for r in readings) else sum(r or 0.0 for r in readings)

    def start(self, conn: Any) -> None:
        """Take the starting readings (``conn``: any connection to the same server)."""
        self.cpu_start, self.wal_start = self.cpu(), wal_position(conn)

    def end(self, conn: Any) -> None:
        """Take the final readings, while the backends are still connected."""
        self.cpu_end, self.wal_end = self.cpu(), wal_position(conn)

    def cpu_per_row(self, rows: int) -> float | None:
        """Backend CPU microseconds per row."""
        if self.cpu_start is None or self.cpu_end is None or not rows:
            return None
        return (self.cpu_end - self.cpu_start) / rows * 1e6

    def wal_per_row(self, rows: int) -> float:
        """WAL bytes per row."""
        return (self.wal_end - self.wal_start) / rows if rows else 0.0


@dataclass(frozen=True)
class Drained:
    """Rows a drain took, its seconds, and PostgreSQL's cost per row."""

    rows: int
    seconds: float
    #: The backends' CPU microseconds per row (None when PostgreSQL is not on this machine).
    pg_cpu_us: float | None
    wal_bytes: float
    row_bytes: float


def drain(
    conns: list[Any], monitor: Any, table: str, work: Callable[[Any, list[int]], None]
) -> Drained:
    """Run ``work(conn, counts)`` on every connection at once, each in a thread.

    ``work`` appends the rows it finished to ``counts``; ``monitor``, a connection of its
    own, reads the table's row size first and the WAL position around the run.
    """
    cost = Cost([backend_pid(conn) for conn in conns])
    counts: list[int] = []
    threads = [threading.Thread(target=work, args=(conn, counts), daemon=True) for conn in conns]
    width = row_bytes(monitor, table)
    cost.start(monitor)
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    cost.end(monitor)
    rows = sum(counts)
    return Drained(rows, seconds, cost.cpu_per_row(rows), cost.wal_per_row(rows), width)

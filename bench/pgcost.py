"""What a run's own PostgreSQL connections cost: their backends' CPU and the WAL written.

The backends are the server processes serving the run's connections, found by
``pg_backend_pid()``. Their CPU can only be read when PostgreSQL runs on this machine, in
the same process namespace (it does here: loopback); otherwise the figures are None and
the tables print "-". Autovacuum, the WAL writer and the checkpointer are not counted.
The WAL figure is the whole cluster's, so nothing else should write meanwhile.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from bench import cpuuse, stats

#: Rows sampled for the average row size: enough for a steady figure, too few to warm the
#: cache for the run that follows.
_SAMPLE_ROWS = 1000


def backend_pid(conn: Any) -> int:
    """The PostgreSQL process serving ``conn``."""
    return int(conn.execute("SELECT pg_backend_pid()").fetchone()[0])


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of backend ``pid``, or None if it is not a local postgres."""
    try:
        with open(f"/proc/{pid}/comm") as comm:
            if not comm.read().startswith("postgres"):
                return None  # a PID of another namespace naming some local process
    except OSError:
        return None
    return cpuuse.process_seconds(pid)


def wal_position(conn: Any) -> int:
    """The WAL insert position, in bytes."""
    return int(conn.execute("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn").fetchone()[0])


def row_bytes(conn: Any, table: str) -> float:
    """The average stored size of a row of ``table``, from a sample of its first rows."""
    found = conn.execute(
        f"SELECT avg(pg_column_size(t.*)) FROM (SELECT * FROM {table} LIMIT {_SAMPLE_ROWS}) t"
    ).fetchone()[0]
    return float(found or 0.0)


@dataclass(frozen=True)
class Drained:
    """Rows a drain took, its seconds, and what its connections cost per row."""

    rows: int
    seconds: float
    #: The backends' CPU microseconds per row (None when they cannot be read).
    pg_cpu_us: float | None
    #: WAL bytes written per row.
    wal_bytes: float
    #: Average stored bytes of one row before the drain.
    row_bytes: float
    #: The whole machine's CPU microseconds per row: backends, client threads, the rest.
    machine_us: float | None

    @property
    def rate(self) -> float:
        """Rows per second."""
        return stats.rate(self.rows, self.seconds)


def _cpu(pids: list[int]) -> float | None:
    readings = [cpu_seconds(pid) for pid in pids]
    return None if any(r is None for r in readings) else sum(r or 0.0 for r in readings)


@contextlib.contextmanager
def connections(count: int, connect: Callable[[], Any]) -> Iterator[list[Any]]:
    """``count`` connections made by ``connect``, all closed on the way out."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(connect()) for _ in range(count)]


def drain(
    conns: list[Any], monitor: Any, table: str, work: Callable[[Any, list[int]], None]
) -> Drained:
    """Run ``work(conn, counts)`` on every connection at once, each in a thread.

    ``work`` appends the rows it finished to ``counts``. The readings go through
    ``monitor``, a connection of its own, so they never count as the drain's work. An
    error in any thread is raised here once all have stopped, rather than reported as a
    short drain.
    """
    pids = [backend_pid(conn) for conn in conns]
    counts: list[int] = []
    errors: list[BaseException] = []

    def guarded(conn: Any) -> None:
        try:
            work(conn, counts)
        except BaseException as err:  # re-raised in the calling thread below
            errors.append(err)

    threads = [threading.Thread(target=guarded, args=(conn,), daemon=True) for conn in conns]
    width = row_bytes(monitor, table)
    cpu_start, wal_start = _cpu(pids), wal_position(monitor)
    machine_start = cpuuse.machine_busy_seconds()
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    machine = cpuuse.busy_between(machine_start, cpuuse.machine_busy_seconds())
    cpu_end, wal_end = _cpu(pids), wal_position(monitor)
    if errors:
        raise errors[0]
    rows = sum(counts)
    cpu = None if cpu_start is None or cpu_end is None or not rows else cpu_end - cpu_start
    return Drained(
        rows=rows,
        seconds=seconds,
        pg_cpu_us=None if cpu is None else cpu / rows * 1e6,
        wal_bytes=(wal_end - wal_start) / rows if rows else 0.0,
        row_bytes=width,
        machine_us=cpuuse.per_event_us(machine, rows),
    )

"""PostgreSQL access for the benchmarks: the machine's server, scratch databases."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

DSN = os.environ.get("BENCH_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")
BENCH_DB = os.environ.get("BENCH_PG_DB", "ensign_bench")


def connect(dbname: str | None = None, *, autocommit: bool = True) -> Any:
    """A psycopg 3 connection to ``dbname`` (default: the maintenance database)."""
    import psycopg

    dsn = DSN if dbname is None else f"{DSN} dbname={dbname}"
    return psycopg.connect(dsn, autocommit=autocommit, connect_timeout=5)


def server_version() -> str | None:
    """The server's version string (e.g. ``16.4``), or None when it cannot be reached."""
    try:
        with connect() as conn:
            row = conn.execute("SHOW server_version").fetchone()
    except Exception:
        return None
    return str(row[0]).split()[0] if row else None


def wait_until_up(timeout: float = 60.0) -> None:
    """Block until the server accepts connections (other sessions may be restarting it)."""
    deadline = time.monotonic() + timeout
    while server_version() is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"PostgreSQL did not answer within {timeout}s")
        time.sleep(0.5)


def recreate_database(name: str = BENCH_DB) -> None:
    """Drop ``name`` if it exists and create it empty."""
    retrying(lambda: _recreate(name))


def _recreate(name: str) -> None:
    wait_until_up()
    with connect() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(name: str = BENCH_DB) -> None:
    """Drop ``name`` if it exists."""
    retrying(lambda: _drop(name))


def _drop(name: str) -> None:
    with connect() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def retrying(action: Callable[[], T], attempts: int = 6) -> T:
    """Run ``action``; after a failure wait for the server and retry (up to ``attempts``).

    Other sessions on this machine restart PostgreSQL in their fault tests, so a run can
    lose its connection through no fault of the code under test.
    """
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except Exception as err:
            if attempt == attempts:
                raise
            print(f"attempt {attempt} failed ({_last_line(err)}); retrying", flush=True)
            time.sleep(1.0)
            wait_until_up()
    raise AssertionError("unreachable")


def _last_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[-1][:200] if lines else type(err).__name__

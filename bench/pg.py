"""PostgreSQL access for the benchmarks: the machine's server, scratch databases."""

from __future__ import annotations

import os
from typing import Any

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


def recreate_database(name: str = BENCH_DB) -> None:
    """Drop ``name`` if it exists and create it empty."""
    with connect() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(name: str = BENCH_DB) -> None:
    """Drop ``name`` if it exists."""
    with connect() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

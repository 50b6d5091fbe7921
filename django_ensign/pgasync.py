"""The relay's hot PostgreSQL statements on asyncio connections of its own event loop.

Claims and ack records are the relay's only per-batch database work. Run through
Django's sync connections they would need a thread hop each way, and every wait on
the socket would hand the GIL to the event loop and queue to get it back; at a few
events a second that costs more than the statements. Here they are plain psycopg
``AsyncConnection`` calls, one connection each so a claim never waits for a record.
Everything else (failures, renewals, SQLite) stays on the portable sync path. Only
the relay imports this module, and only on PostgreSQL (it needs psycopg).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import psycopg
from django.db import DatabaseError, connections

from django_ensign import notify, pgclaims
from django_ensign.models import OutboxEvent


class _Session:
    """A lazily opened async connection; dropped after an error, so the next call reconnects."""

    def __init__(self, params: dict[str, Any]) -> None:
        self._params = params
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def get(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(autocommit=True, **self._params)
        return self._conn

    async def drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()


class AsyncStatements:
    """Claim and ack-record statements of :mod:`pgclaims` over async connections."""

    def __init__(self, using: str, params: dict[str, Any]) -> None:
        self._table = connections[using].ops.quote_name(OutboxEvent._meta.db_table)
        self._claims = _Session(params)
        self._records = _Session(params)

    @classmethod
    async def open(cls, using: str) -> AsyncStatements:
        """Statements for the database of ``using`` (read its settings off the loop)."""
        params = await asyncio.to_thread(_session_params, using)
        return cls(using, params)

    async def claim(
        self, *, limit: int, lease_seconds: float, topics: Sequence[str]
    ) -> list[tuple[Any, ...]]:
        """:func:`pgclaims.claim`: the same statement, rows and autocommit transaction."""
        params = pgclaims.claim_params(limit, lease_seconds, topics)
        try:
            conn = await self._claims.get()
            cursor = await conn.execute(pgclaims.CLAIM_SQL, params)
            rows = await cursor.fetchall()
        except psycopg.Error as err:
            await self._claims.drop()
            raise DatabaseError(f"outbox claim failed: {err}") from err
        return pgclaims.claimed_rows(params, rows)

    async def newest_id(self) -> int | None:
        """:func:`claims.newest_id` on the claim connection (a drain opens no other)."""
        try:
            conn = await self._claims.get()
            cursor = await conn.execute(f"SELECT MAX(id) FROM {self._table}")
            row = await cursor.fetchone()
        except psycopg.Error as err:
            await self._claims.drop()
            raise DatabaseError(f"reading the newest outbox row failed: {err}") from err
        return None if row is None or row[0] is None else int(row[0])

    async def record_acks(self, acks: Sequence[pgclaims.Ack]) -> int:
        """:func:`pgclaims.record_acks` in one autocommit statement."""
        if not acks:
            return 0
        try:
            conn = await self._records.get()
            cursor = await conn.execute(
                pgclaims.record_acks_sql(self._table), pgclaims.record_acks_params(acks)
            )
        except psycopg.Error as err:
            await self._records.drop()
            raise DatabaseError(f"recording outbox acks failed: {err}") from err
        return int(cursor.rowcount)

    async def close(self) -> None:
        """Close both connections."""
        await self._claims.drop()
        await self._records.drop()


def _session_params(using: str) -> dict[str, Any]:
    params = notify.conninfo(using)
    # As Django does: no server-side prepared statements unless the settings ask for
    # them, so the relay keeps working behind a transaction-pooling proxy.
    params["prepare_threshold"] = (
        connections[using].settings_dict.get("OPTIONS", {}).get("prepare_threshold")
    )
    return params

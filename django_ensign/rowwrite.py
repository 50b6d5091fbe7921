"""The fast path of outbox writes: one hand-built statement inserts the rows.

A model save that publishes pays for this statement on top of its own, so it is built
by hand rather than through the ORM (whose insert compiler costs more than the insert
itself). On PostgreSQL it also carries the relays' ``pg_notify``: PostgreSQL delivers
the notification when the caller's transaction commits, drops it on rollback, and
sends one however many rows the transaction wrote.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

from django.db import connections

from django_ensign.models import OutboxEvent, OutboxStatus

#: Rows per INSERT statement of a bulk write on PostgreSQL.
CHUNK = 1000
#: On SQLite, whose oldest supported versions take at most 999 parameters a statement.
SQLITE_CHUNK = 100

_COLUMNS = (
    "event_id, topic, data, mimetype, type_name, type_version, metadata, ordering_key, "
    "status, attempts, nack_error, last_error"
)
_VALUES = "(%s, %s, %s, %s, %s, %s, %s{cast}, %s, '" + OutboxStatus.PENDING + "', 0, '', '')"


class NewRow(NamedTuple):
    """The caller-supplied columns of one outbox row, validated and encoded."""

    event_id: str
    topic: str
    data: bytes
    mimetype: str
    type_name: str
    type_version: str
    metadata_json: str
    ordering_key: str

    def columns(self) -> dict[str, Any]:
        """The row as ``OutboxEvent`` keyword arguments."""
        fields = self._asdict()
        fields["metadata"] = json.loads(fields.pop("metadata_json"))
        return fields


class Written(NamedTuple):
    """What the database filled in for a row."""

    id: int
    created: dt.datetime
    next_attempt_at: dt.datetime


@functools.lru_cache(maxsize=64)
def _statement(table: str, rows: int, notify: bool, returning: bool, jsonb: bool) -> str:
    values = _VALUES.format(cast="::jsonb" if jsonb else "")
    insert = f"INSERT INTO {table} ({_COLUMNS}) VALUES {', '.join([values] * rows)}"
    if returning:
        insert += " RETURNING event_id, id, created, next_attempt_at"
    if not notify:
        return insert
    if not returning:
        # A data-modifying WITH runs whether or not the query reads it.
        return f"WITH written AS ({insert}) SELECT pg_notify(%s, '')"
    # The one-row subquery runs once per statement, not once per row.
    return (
        f"WITH written AS ({insert}) SELECT written.* FROM written, "
        "(SELECT pg_notify(%s, '')) AS wake"
    )


def _params(rows: Sequence[NewRow]) -> list[Any]:
    params: list[Any] = []
    for row in rows:
        params.extend(row)
    return params


def statements(
    rows: Sequence[NewRow],
    *,
    using: str,
    channel: str | None,
    returning: bool,
    then: str = "",
) -> Iterator[tuple[str, list[Any]]]:
    """The SQL and parameters inserting ``rows``, one statement per :data:`CHUNK` rows.

    ``channel`` and ``returning`` need PostgreSQL. ``then`` is SQL sent in the same call
    as the last INSERT (the held rows' ``COMMIT``).
    """
    connection = connections[using]
    table = connection.ops.quote_name(OutboxEvent._meta.db_table)
    postgres = connection.vendor == "postgresql"
    size = CHUNK if postgres else SQLITE_CHUNK
    last = (len(rows) - 1) // size * size
    for start in range(0, len(rows), size):
        chunk = rows[start : start + size]
        params = _params(chunk)
        if channel is not None:
            params.append(channel)
        sql = _statement(table, len(chunk), channel is not None, returning, postgres)
        yield (f"{sql}; {then}" if then and start == last else sql), params


def insert(rows: Sequence[NewRow], *, using: str, channel: str | None) -> dict[str, Written]:
    """Insert ``rows``; with ``channel``, NOTIFY it on commit. Keyed by event id."""
    written: dict[str, Written] = {}
    with connections[using].cursor() as cursor:
        for sql, params in statements(rows, using=using, channel=channel, returning=True):
            cursor.execute(sql, params)
            for event_id, *filled in cursor.fetchall():
                written[event_id] = Written(*filled)
    return written


def insert_only(rows: Sequence[NewRow], *, using: str, channel: str | None) -> None:
    """:func:`insert` for callers that need nothing back."""
    with connections[using].cursor() as cursor:
        for sql, params in statements(rows, using=using, channel=channel, returning=False):
            cursor.execute(sql, params)

"""PostgreSQL fast path of outbox writes: one statement inserts the rows and wakes the relays.

A model save that publishes pays for this statement on top of its own, so it is built
by hand rather than through the ORM (whose insert compiler costs more than the insert
itself) and it carries the relays' ``pg_notify``: PostgreSQL delivers the notification
when the caller's transaction commits, drops it on rollback, and sends one however many
rows the transaction wrote.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Sequence
from typing import Any, NamedTuple

from django.db import connections

from django_ensign.models import OutboxEvent, OutboxStatus

#: Rows per INSERT statement of a bulk write.
CHUNK = 1000

_COLUMNS = (
    "event_id, topic, data, mimetype, type_name, type_version, metadata, ordering_key, "
    "status, attempts, nack_error, last_error"
)
_VALUES = f"(%s, %s, %s, %s, %s, %s, %s::jsonb, %s, '{OutboxStatus.PENDING}', 0, '', '')"


class NewRow(NamedTuple):
    """The caller-supplied columns of one outbox row, validated and encoded."""

    event_id: str
    topic: str
    data: bytes
    mimetype: str
    type_name: str
    type_version: str
    metadata: dict[str, str]
    ordering_key: str


class Written(NamedTuple):
    """What the database filled in for a row."""

    id: int
    created: dt.datetime
    next_attempt_at: dt.datetime


@functools.lru_cache(maxsize=64)
def _statement(table: str, rows: int, channel: str | None) -> str:
    insert = (
        f"INSERT INTO {table} ({_COLUMNS}) VALUES {', '.join([_VALUES] * rows)} "
        "RETURNING event_id, id, created, next_attempt_at"
    )
    if channel is None:
        return insert
    # The one-row subquery runs once per statement, not once per row.
    return (
        f"WITH written AS ({insert}) SELECT written.* FROM written, "
        "(SELECT pg_notify(%s, '')) AS wake"
    )


def insert(rows: Sequence[NewRow], *, using: str, channel: str | None) -> dict[str, Written]:
    """Insert ``rows``; with ``channel``, NOTIFY it on commit. Keyed by event id."""
    connection = connections[using]
    table = connection.ops.quote_name(OutboxEvent._meta.db_table)
    written: dict[str, Written] = {}
    with connection.cursor() as cursor:
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start : start + CHUNK]
            params: list[Any] = []
            for row in chunk:
                params.extend(row[:6])
                params.append(json.dumps(row.metadata))
                params.append(row.ordering_key)
            if channel is not None:
                params.append(channel)
            cursor.execute(_statement(table, len(chunk), channel), params)
            for event_id, *filled in cursor.fetchall():
                written[event_id] = Written(*filled)
    return written

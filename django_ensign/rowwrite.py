"""The fast path of outbox writes: one hand-built statement inserts the rows.

A model save that publishes pays for this statement on top of its own, so it is built
by hand rather than through the ORM (whose insert compiler costs more than the insert
itself). On PostgreSQL it also carries the relays' NOTIFY: PostgreSQL delivers the
notification when the caller's transaction commits, drops it on rollback, and sends one
however many rows the transaction wrote.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from django.db import connections

from django_ensign.db import binding, prepared
from django_ensign.models import OutboxEvent, OutboxStatus

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

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
def _statement(table: str, rows: int, returning: bool, cast: bool, wake: str | None) -> str:
    """The INSERT of ``rows`` rows; ``wake`` says how it also NOTIFYs, if it does.

    ``wake`` is None (no NOTIFY), :data:`_WAKE_PARAM` (``pg_notify`` with the channel as
    the last parameter, inside the one statement) or a quoted channel name (a ``NOTIFY``
    statement after the INSERT, in the same call: PostgreSQL runs it cheaper than the
    ``pg_notify`` that a data-modifying WITH needs).
    """
    values = _VALUES.format(cast="::jsonb" if cast else "")
    insert = f"INSERT INTO {table} ({_COLUMNS}) VALUES {', '.join([values] * rows)}"
    if returning:
        insert += " RETURNING event_id, id, created, next_attempt_at"
    if wake is None:
        return insert
    if wake != _WAKE_PARAM:
        return f"{insert}; NOTIFY {wake}"
    if not returning:
        # A data-modifying WITH runs whether or not the query reads it.
        return f"WITH written AS ({insert}) SELECT pg_notify(%s, '')"
    # The one-row subquery runs once per statement, not once per row.
    return (
        f"WITH written AS ({insert}) SELECT written.* FROM written, "
        "(SELECT pg_notify(%s, '')) AS wake"
    )


#: ``wake`` of :func:`_statement` when the channel is a parameter of ``pg_notify``.
_WAKE_PARAM = "%s"


def _quoted_channel(channel: str) -> str:
    # Part of the statement's text, which psycopg reads for placeholders: % doubles too.
    return '"' + channel.replace('"', '""').replace("%", "%%") + '"'


def _params(rows: Sequence[NewRow]) -> list[Any]:
    params: list[Any] = []
    for row in rows:
        params.extend(row)
    return params


def statements(
    rows: Sequence[NewRow],
    *,
    connection: BaseDatabaseWrapper,
    channel: str | None,
    returning: bool,
    then: str = "",
) -> Iterator[tuple[str, list[Any]]]:
    """The SQL and parameters inserting ``rows``, one statement per :data:`CHUNK` rows.

    ``channel`` and ``returning`` need PostgreSQL. ``then`` is SQL sent in the same call
    as the last INSERT (the held rows' ``COMMIT``).
    """
    table = connection.ops.quote_name(OutboxEvent._meta.db_table)
    postgres = connection.vendor == "postgresql"
    size = CHUNK if postgres else SQLITE_CHUNK
    last = (len(rows) - 1) // size * size
    client_side = binding.connection_binds_client_side(connection)
    wake: str | None = None
    if channel is not None:
        # LISTEN quotes the channel the same way (notify.py), so both name one channel.
        wake = _quoted_channel(channel) if client_side and not returning else _WAKE_PARAM
    for start in range(0, len(rows), size):
        chunk = rows[start : start + size]
        params = _params(chunk)
        if wake == _WAKE_PARAM:
            params.append(channel)
        # A quoted string parameter reaches PostgreSQL untyped, and one row's untyped
        # value takes its column's type; several rows' VALUES make it text, which a jsonb
        # column refuses, and server-side binding sends it as text.
        cast = postgres and (len(chunk) > 1 or not client_side)
        sql = _statement(table, len(chunk), returning, cast, wake)
        yield (f"{sql}; {then}" if then and start == last else sql), params


#: Held rows up to this many go out as EXECUTEs of the session's prepared INSERT; more
#: go out as multi-row INSERTs, whose one parse is then worth it.
PREPARED_ROWS = 16

_EXECUTE = f"EXECUTE {prepared.NAME} (" + ", ".join(["%s"] * len(NewRow._fields)) + ")"
#: The PREPAREd INSERT's parameters, $1 to $8, in NewRow's order.
_POSITIONS = range(1, len(NewRow._fields) + 1)


def prepared_call(
    rows: Sequence[NewRow],
    *,
    connection: BaseDatabaseWrapper,
    channel: str | None,
    step: prepared.Step,
    then: str = "",
) -> tuple[str, list[Any]]:
    """One call inserting ``rows`` by EXECUTEs of the session's prepared INSERT.

    ``step`` says whether the call first (drops and) prepares it; PostgreSQL takes each
    parameter's type from its column. Needs a driver that binds client-side (one call,
    several statements); ``then`` as in :func:`statements`.
    """
    parts = []
    if step.prepare:
        parts.append(prepared.DROP_IF_PRESENT)
        table = connection.ops.quote_name(OutboxEvent._meta.db_table)
        values = _VALUES.format(cast="").replace("%s", "${}").format(*_POSITIONS)
        parts.append(f"PREPARE {prepared.NAME} AS INSERT INTO {table} ({_COLUMNS}) VALUES {values}")
    parts.extend([_EXECUTE] * len(rows))
    if channel is not None:
        parts.append(f"NOTIFY {_quoted_channel(channel)}")
    if then:
        parts.append(then)
    return "; ".join(parts), _params(rows)


def insert(rows: Sequence[NewRow], *, using: str, channel: str | None) -> dict[str, Written]:
    """Insert ``rows``; with ``channel``, NOTIFY it on commit. Keyed by event id."""
    written: dict[str, Written] = {}
    connection = connections[using]
    with connection.cursor() as cursor:
        for sql, params in statements(rows, connection=connection, channel=channel, returning=True):
            cursor.execute(sql, params)
            for event_id, *filled in cursor.fetchall():
                written[event_id] = Written(*filled)
    return written


def insert_only(rows: Sequence[NewRow], *, using: str, channel: str | None) -> None:
    """:func:`insert` for callers that need nothing back."""
    connection = connections[using]
    with connection.cursor() as cursor:
        for sql, params in statements(
            rows, connection=connection, channel=channel, returning=False
        ):
            cursor.execute(sql, params)

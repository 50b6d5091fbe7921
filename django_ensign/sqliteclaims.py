"""SQLite fast path of the claim: one ``UPDATE … RETURNING`` statement.

SQLite has no row locks, but one statement is atomic, so concurrent relays still take
disjoint rows. The key check names its partial index and spells the index predicate
with literals: SQLite only uses a partial index when the query repeats its condition
without bound parameters, and otherwise scans every waiting row per candidate.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from django.db import connections

from django_ensign.models import OutboxEvent

_COLUMNS = (
    "id", "event_id", "topic", "data", "mimetype", "type_name", "type_version",
    "metadata", "ordering_key", "attempts",
)  # fmt: skip
# Django stores microseconds, strftime gives milliseconds: pad to the end of the
# millisecond so times written by Python in this millisecond count as past.
# Doubled percent signs: the statement goes through Django's %s parameter style.
_NOW = "(strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now') || '999')"


def claim_sql(table: str, topics: int) -> str:
    """The claim statement; parameters: token, lease seconds, *topics, limit."""
    topic_filter = f"AND o.topic IN ({', '.join(['%s'] * topics)})" if topics else ""
    return f"""
        UPDATE {table}
        SET status = 'in_flight', lease_token = %s, attempts = attempts + 1,
            lease_expires_at =
                strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now', '+' || %s || ' seconds') || '000'
        WHERE id IN (
            SELECT o.id FROM {table} o
            WHERE (
                (o.status IN ('pending', 'retrying') AND o.next_attempt_at <= {_NOW})
                OR (o.status = 'in_flight' AND o.lease_expires_at < {_NOW})
            )
            {topic_filter}
            AND (
                o.ordering_key = ''
                OR NOT EXISTS (
                    SELECT 1 FROM {table} e INDEXED BY ensign_outbox_key_open
                    WHERE e.ordering_key = o.ordering_key AND e.id < o.id
                    AND e.status IN ('pending', 'in_flight', 'retrying')
                )
            )
            ORDER BY o.id
            LIMIT %s
        )
        RETURNING {", ".join(_COLUMNS)}
    """


def claim(
    *, limit: int, lease_seconds: float, topics: Sequence[str], using: str
) -> list[tuple[Any, ...]]:
    """Claim and lease in one statement; rows as ``(token, *columns)``."""
    connection = connections[using]
    table = connection.ops.quote_name(OutboxEvent._meta.db_table)
    token = uuid.uuid4()
    stored = OutboxEvent._meta.get_field("lease_token").get_db_prep_value(token, connection)
    params: list[Any] = [stored, f"{float(lease_seconds):f}", *topics, limit]
    with connection.cursor() as cursor:
        cursor.execute(claim_sql(table, len(topics)), params)
        rows = sorted(cursor.fetchall(), key=lambda row: row[0])
    return [(token, *row) for row in rows]

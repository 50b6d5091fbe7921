"""PostgreSQL fast paths of :mod:`django_ensign.claims`: one statement per claim, one per acks.

Same semantics as the SQLite claim and the portable ack write. The claim is the
``ensign_outbox_claim`` function of migration 0003: it locks with ``FOR UPDATE SKIP
LOCKED`` and leases in the same statement. Acks are one ``UPDATE … FROM unnest(…)``
guarded by each row's lease token. The relay runs both statements through
:mod:`django_ensign.pgasync`; the functions here run them on Django's connection.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from django.db import connections

from django_ensign.models import OutboxEvent
from django_ensign.runs import identity_runs

#: The claim, a function created by migration 0003 (its docstring says why a function);
#: parameters: limit, lease seconds, lease token, topics (NULL for all). Its rows are
#: id, event_id, topic, data, mimetype, type_name, type_version, metadata (JSON text),
#: ordering_key, attempts.
CLAIM_SQL = "SELECT * FROM ensign_outbox_claim(%s, %s, %s, %s)"


def claim_params(limit: int, lease_seconds: float, topics: Sequence[str]) -> list[Any]:
    """Parameters of :data:`CLAIM_SQL` under a new lease token (the first one)."""
    return [limit, float(lease_seconds), uuid.uuid4(), list(topics) or None]


def claimed_rows(params: list[Any], rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """``(token, *columns)`` per claimed row, oldest first."""
    token = params[2]
    return [(token, *row) for row in sorted(rows, key=lambda row: row[0])]


def claim(
    *, limit: int, lease_seconds: float, topics: Sequence[str], using: str
) -> list[tuple[Any, ...]]:
    """Claim and lease in one statement (autocommit: its own short transaction)."""
    params = claim_params(limit, lease_seconds, topics)
    with connections[using].cursor() as cursor:
        cursor.execute(CLAIM_SQL, params)
        return claimed_rows(params, cursor.fetchall())


def record_acks_sql(table: str) -> str:
    """The ack statement; parameters: ids, lease tokens, commit times (arrays, same order).

    The lease token alone guards the row: only a claim sets one (a fresh uuid, with
    status ``in_flight``) and every way out of ``in_flight`` clears it. Adding
    ``status = 'in_flight'`` would let the planner read every in-flight row through the
    lease index (whose statistics, taken before the rows were claimed, call it empty)
    instead of looking up each acked id by primary key.
    """
    return f"""
        UPDATE {table} t
        SET status = 'acked', acked_at = COALESCE(v.acked_at, statement_timestamp()),
            lease_token = NULL, lease_expires_at = NULL, nack_code = NULL, nack_error = ''
        FROM unnest(%s::bigint[], %s::uuid[], %s::timestamptz[]) AS v(id, token, acked_at)
        WHERE t.id = v.id AND t.lease_token = v.token
    """


Ack = tuple[int, uuid.UUID, dt.datetime | None]


def record_acks_params(acks: Sequence[Ack]) -> list[str]:
    """The ack statement's three arrays as PostgreSQL array literals.

    Joining strings costs a fraction of adapting three lists of hundreds of values
    element by element, and the statement casts them anyway.
    """
    # Acks come in runs of one claim's token and of one server commit's time: each
    # run's value is formatted once.
    tokens: list[str] = []
    for token, count in identity_runs(a[1] for a in acks):
        tokens += [str(token)] * count
    times: list[str] = []
    for at, count in identity_runs(a[2] for a in acks):
        times += [f'"{at.isoformat()}"' if at else "NULL"] * count
    ids = ",".join([str(a[0]) for a in acks])
    return [f"{{{ids}}}", f"{{{','.join(tokens)}}}", f"{{{','.join(times)}}}"]


def record_acks(acks: Sequence[Ack], using: str) -> int:
    """Mark rows acked at the server's commit time while their lease still holds them."""
    if not acks:
        return 0
    table = connections[using].ops.quote_name(OutboxEvent._meta.db_table)
    with connections[using].cursor() as cursor:
        cursor.execute(record_acks_sql(table), record_acks_params(acks))
        return int(cursor.rowcount)

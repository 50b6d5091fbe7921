"""``bench_outbox_sql``: the relay's claim and ack statements alone, draining the outbox.

No relay, no server: each worker claims a batch with :data:`pgclaims.CLAIM_SQL` and records
it acked with :func:`pgclaims.record_acks_sql`, the statements and parameters the relay
sends, until no row is left. Prints one JSON document: rows, seconds, and PostgreSQL's cost
per row (its backends' CPU, WAL written, average row size).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
from typing import Any

import psycopg
from django.core.management.base import BaseCommand, CommandParser
from django.db import connection

from bench import pgcost
from django_ensign import notify, pgclaims
from django_ensign.models import OutboxEvent

#: Long enough that no lease expires during a drain (the relay renews its own instead).
LEASE_SECONDS = 60.0


class Command(BaseCommand):
    help = "Drain the outbox with the relay's two statements only; print JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--workers", type=int, default=1, help="Concurrent connections.")
        parser.add_argument("--batch", type=int, default=500, help="Rows per claim.")

    def handle(self, *args: Any, workers: int, batch: int, **options: Any) -> None:
        params = notify.conninfo("default")
        params["prepare_threshold"] = None  # as the relay's own sessions (see pgasync)
        table = connection.ops.quote_name(OutboxEvent._meta.db_table)
        connect = functools.partial(psycopg.connect, autocommit=True, **params)
        with pgcost.connections(workers, connect) as conns, connect() as monitor:
            drained = pgcost.drain(
                conns, monitor, table, lambda conn, counts: _drain(conn, table, batch, counts)
            )
        result = dataclasses.asdict(drained)
        self.stdout.write(json.dumps(result))


def _drain(conn: Any, table: str, batch: int, counts: list[int]) -> None:
    record = pgclaims.record_acks_sql(table)
    while True:
        params = pgclaims.claim_params(batch, LEASE_SECONDS, ())
        rows = pgclaims.claimed_rows(params, conn.execute(pgclaims.CLAIM_SQL, params).fetchall())
        if not rows:
            return
        # A server group commit gives a claim's events one commit time.
        committed = dt.datetime.now(dt.UTC)
        acks = [(row[1], row[0], committed) for row in rows]
        conn.execute(record, pgclaims.record_acks_params(acks))
        counts.append(len(rows))

"""``outbox-sql``: what the relay's statements cost PostgreSQL's backends per row (issue 4).

The multi-relay drain is bound by the two cores' CPU, shared by the relays, the server and
PostgreSQL. This puts PostgreSQL's share of it next to the claim loop's, in the same run.
"""

from __future__ import annotations

import functools

from bench import djproject, pg, pgcost, rawclient, report
from bench.ceilings import pg_claim
from bench.context import Context
from tests.support.server import EmbeddedServer

TITLE = "The outbox's SQL alone, against the claim loop (issue 4)"
#: Concurrent connections of each pair of rows: one relay, and two as in the 2-relay drain.
WORKERS = (1, 2)


def _ours(ctx: Context, server: EmbeddedServer, workers: int) -> pgcost.Drained:
    project = djproject.Project("postgres", ctx.workdir, server).create()
    try:
        project.manage_json("bench_fill_outbox", "--count", str(ctx.events), "--topic", "sql")
        return pgcost.Drained(
            **project.manage_json(
                "bench_outbox_sql", "--workers", str(workers), "--batch", str(pg_claim.BATCH)
            )
        )
    finally:
        project.drop()


def run(ctx: Context) -> report.Result:
    """Drain fresh outboxes with the relay's statements; run the claim loop alongside."""
    # The server only lends the project its credentials: nothing is published.
    server = rawclient.start_server(ctx.workdir)
    try:
        ours = {w: pg.retrying(functools.partial(_ours, ctx, server, w)) for w in WORKERS}
    finally:
        server.stop()
    table = report.Table(
        [
            "statements",
            "workers",
            "rows",
            "rows/s",
            "PostgreSQL CPU µs/row",
            "machine CPU µs/row",
            "WAL bytes/row",
            "row bytes",
        ]
    )
    for workers in WORKERS:
        pairs = [
            ("outbox: claim function + ack", ours[workers]),
            ("claim loop (ceiling)", ctx.pg_claim(ctx.events, workers)),
        ]
        for label, drained in pairs:
            table.add(
                label,
                workers,
                report.number(drained.rows),
                report.number(drained.rate),
                report.figure(drained.pg_cpu_us, 1),
                report.figure(drained.machine_us, 1),
                report.number(drained.wal_bytes),
                report.number(drained.row_bytes),
            )
    method = (
        f"Outbox: a fresh migrated database with {ctx.events:,} pending rows written by "
        "`bench_fill_outbox` (as in `relay-drain`), then `bench_outbox_sql`: N connections "
        "each claim with the relay's `ensign_outbox_claim` call "
        f"({pg_claim.BATCH} rows) and record the rows acked with the relay's ack statement "
        "and parameters, until none is left; no relay, no server, no prepared statements "
        "(as the relay). Claim loop: the `ceilings` method (its psycopg prepares both "
        "statements after five runs, by default). PostgreSQL CPU: user + system "
        "time of the connections' own backends from `/proc`, per row (autovacuum and "
        "PostgreSQL's other processes not counted); machine CPU: every core's busy time "
        "(`/proc/stat`) over the drain, per row: backends, client threads and the rest; "
        "WAL: the cluster's insert position's "
        "advance, per row; row bytes: `avg(pg_column_size(t.*))` of 1,000 rows before the run."
    )
    return report.Result("outbox-sql", TITLE, method, table)

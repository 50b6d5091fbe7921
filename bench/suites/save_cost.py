"""``save-cost``: what a signal-written outbox row adds to a model save (issue 4)."""

from __future__ import annotations

import functools
import statistics
from typing import Any

from bench import djproject, pg, rawclient, report
from bench.context import Context
from tests.support.server import EmbeddedServer

TITLE = "Model save with and without the outbox row (issue 4)"


ENGINE = "django_ensign.db.backends.postgresql"
#: Each measured setup: its name in the table, the database, the PostgreSQL engine, and
#: whether that engine prepares the outbox INSERT (``ENSIGN_PREPARED_INSERT``).
SETUPS = (
    ("PostgreSQL, Django's engine", "postgres", None, False),
    ("PostgreSQL, django_ensign engine", "postgres", ENGINE, False),
    ("PostgreSQL, django_ensign engine, prepared INSERT", "postgres", ENGINE, True),
    ("SQLite", "sqlite", None, False),
)


#: How each save is run: (name in the table, extra ``bench_save_cost`` arguments).
MODES = (("in atomic()", ()), ("autocommit", ("--autocommit",)))


def _measure(
    ctx: Context, server: EmbeddedServer, db: str, engine: str | None, prepared: bool
) -> list[dict[str, Any]]:
    project = djproject.Project(
        db, ctx.workdir, server, pg_engine=engine, pg_prepared=prepared
    ).create()
    try:
        count = max(50, min(2_000, ctx.events // 10))
        return [
            project.manage_json("bench_save_cost", "--count", str(count), *extra)
            for _, extra in MODES
        ]
    finally:
        project.drop()


def run(ctx: Context) -> report.Result:
    """Time saves of a plain and a published model on PostgreSQL and SQLite."""
    server = rawclient.start_server(ctx.workdir)
    try:
        results = [
            (name, pg.retrying(functools.partial(_measure, ctx, server, db, engine, prepared)))
            for name, db, engine, prepared in SETUPS
        ]
    finally:
        server.stop()
    table = report.Table(
        [
            "database",
            "saves run",
            "saves each",
            "plain save µs",
            "published save µs",
            "overhead",
            "goal",
        ]
    )
    for name, modes in results:
        for (mode, _), got in zip(MODES, modes, strict=True):
            _row(table, name, mode, got)
    method = (
        "`bench_save_cost` saves new instances of two models with the same fields: "
        "`PlainReading` (not published) and `Reading` (registered with the outbox: "
        "`post_save` writes an OutboxEvent row in the same transaction). Each save runs "
        "either in its own `transaction.atomic()` or bare under autocommit, as a view "
        "without ATOMIC_REQUESTS runs it (a published save then opens its own transaction, "
        "so the change and its event commit together: BEGIN and COMMIT are round trips the "
        "plain autocommit save does not make, so the goal applies to the atomic() rows, "
        "where both saves have them); both include their commit. Nine "
        "alternating rounds after a warm-up, each saving a third of the count of each "
        "model; the µs columns are the medians of the rounds, the overhead the median of "
        "the rounds' ratios (the machine's commit latency drifts over seconds; a round's "
        "pair shares it). No relay running. PostgreSQL with Django's engine (the row is an "
        "INSERT round trip of its own) and with `django_ensign.db.backends.postgresql` (the "
        "row goes out in the COMMIT's round trip), there also with "
        "`ENSIGN_PREPARED_INSERT` (each connection's session prepares the row's INSERT "
        "with its second published commit; the rounds run on one connection)."
    )
    return report.Result("save-cost", TITLE, method, table)


def _row(table: report.Table, name: str, mode: str, got: dict[str, Any]) -> None:
    ratios = [b / a for a, b in zip(got["plain"], got["published"], strict=True)]
    table.add(
        name,
        mode,
        report.number(got["saves"]),
        report.number(statistics.median(got["plain"]) * 1e6),
        report.number(statistics.median(got["published"]) * 1e6),
        f"{(statistics.median(ratios) - 1) * 100:+.0f} %",
        "≤ +30 %" if mode == MODES[0][0] else "-",
    )

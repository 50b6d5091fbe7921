"""``save-cost``: what a signal-written outbox row adds to a model save (issue 4)."""

from __future__ import annotations

import functools

from bench import djproject, pg, rawclient, report
from bench.context import Context
from tests.support.server import EmbeddedServer

TITLE = "Model save with and without the outbox row (issue 4)"


#: Each measured setup: its name in the table, the database, the PostgreSQL engine.
SETUPS = (
    ("PostgreSQL", "postgres", None),
    ("PostgreSQL, django_ensign engine", "postgres", "django_ensign.db.backends.postgresql"),
    ("SQLite", "sqlite", None),
)


def _measure(ctx: Context, server: EmbeddedServer, db: str, engine: str | None) -> dict[str, float]:
    project = djproject.Project(db, ctx.workdir, server, pg_engine=engine).create()
    try:
        count = max(50, min(2_000, ctx.events // 10))
        got: dict[str, float] = project.manage_json("bench_save_cost", "--count", str(count))
    finally:
        project.drop()
    return got


def run(ctx: Context) -> report.Result:
    """Time saves of a plain and a published model on PostgreSQL and SQLite."""
    server = rawclient.start_server(ctx.workdir)
    try:
        results = [
            (name, pg.retrying(functools.partial(_measure, ctx, server, db, engine)))
            for name, db, engine in SETUPS
        ]
    finally:
        server.stop()
    table = report.Table(
        ["database", "saves each", "plain save µs", "published save µs", "overhead", "goal"]
    )
    for name, got in results:
        saves = got["saves"]
        plain = got["plain_s"] / saves * 1e6
        published = got["published_s"] / saves * 1e6
        table.add(
            name,
            report.number(saves),
            report.number(plain),
            report.number(published),
            f"{(published / plain - 1) * 100:+.0f} %",
            "≤ +30 %",
        )
    method = (
        "`bench_save_cost` saves new instances of two models with the same fields, each save "
        "in its own `transaction.atomic()` (so each includes its commit): `PlainReading` "
        "(not published) and `Reading` (registered with the outbox: `post_save` writes an "
        "OutboxEvent row in the same transaction). Three alternating rounds after a warm-up; "
        "no relay running. On PostgreSQL, once with Django's engine (the row is its own "
        "INSERT round trip) and once with `django_ensign.db.backends.postgresql` (the row "
        "goes out in the COMMIT's round trip)."
    )
    return report.Result("save-cost", TITLE, method, table)

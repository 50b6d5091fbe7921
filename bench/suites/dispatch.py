"""``dispatch``: ``ensign_subscribe`` handing stored events to handlers (issue 5)."""

from __future__ import annotations

import asyncio
import functools
import itertools
import sqlite3
import time
from dataclasses import dataclass

from bench import djproject, pg, procs, rawclient, report, stats
from bench.context import Context
from bench.djapp.topics import NOOP_TOPIC, WRITE_TOPIC
from tests.support.server import EmbeddedServer

TITLE = "Subscriber dispatch (issue 5)"
#: Events per delivery asked for with the batch extension.
BATCH_SIZE = 500
#: (topic, batch size, database) of each row.
SHAPES = [
    (NOOP_TOPIC, 0, "postgres"),
    (NOOP_TOPIC, BATCH_SIZE, "postgres"),
    (WRITE_TOPIC, 0, "postgres"),
    (WRITE_TOPIC, BATCH_SIZE, "postgres"),
    (NOOP_TOPIC, BATCH_SIZE, "sqlite"),
]
_INBOX = (
    "SELECT count(*), min(handled_at), max(handled_at) FROM django_ensign_inboxevent "
    "WHERE topic = {0}"
)
_groups = itertools.count(1)


@dataclass(frozen=True)
class Dispatch:
    """Events handled, the span of their handling, and the wall time with start-up."""

    handled: int
    span: float
    wall: float
    peak_rss: float

    @property
    def rate(self) -> float:
        """Events handled per second, first to last."""
        return stats.rate(self.handled - 1, self.span)


def _inbox(project: djproject.Project, topic: str) -> tuple[int, float]:
    """Handled events of ``topic`` so far and the seconds between the first and last."""
    if project.db == "postgres":
        with pg.connect(pg.BENCH_DB) as conn:
            row = conn.execute(_INBOX.format("%s"), (topic,)).fetchone()
        count, first, last = row if row else (0, None, None)
        span = (last - first).total_seconds() if first and last else 0.0
        return int(count), span
    with sqlite3.connect(project.sqlite_path, timeout=30) as conn:
        count, first, last = conn.execute(_INBOX.format("?"), (topic,)).fetchone()
    if not (first and last):
        return int(count), 0.0
    parse = _sqlite_time
    return int(count), parse(last) - parse(first)


def _sqlite_time(text: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(text).timestamp()


def _dispatch(
    ctx: Context, server: EmbeddedServer, topic: str, batch: int, db: str, events: int
) -> Dispatch:
    project = djproject.Project(db, ctx.workdir, server).create()
    try:
        args = ["ensign_subscribe", topic, "--group", f"bench-{next(_groups)}"]
        args += ["--from", "earliest", "--batch-size", str(batch)]
        started = time.perf_counter()
        child = project.start(*args, log=ctx.workdir / f"dispatch-{topic}-{batch}-{db}.log")
        deadline = started + 120 + events / 20
        handled, span = 0, 0.0
        with procs.RssSampler(child.pid) as rss:
            while handled < events and time.perf_counter() < deadline:
                if child.poll() is not None:
                    raise RuntimeError(f"ensign_subscribe exited with {child.returncode}")
                time.sleep(0.5)
                handled, span = _inbox(project, topic)
        wall = time.perf_counter() - started
        procs.stop(child)
    finally:
        project.drop()
    return Dispatch(handled, span, wall, max(rss.samples, default=0.0))


async def _fill(server: EmbeddedServer, events: int) -> None:
    session = rawclient.connect(server)
    try:
        for topic in (NOOP_TOPIC, WRITE_TOPIC):
            await rawclient.publish_batches(session, topic, events)
    finally:
        await session.channel.close()


def run(ctx: Context) -> report.Result:
    """Fill the topics, then time a fresh consumer group through each of them."""
    events = ctx.slow_events
    server = rawclient.start_server(ctx.workdir)
    try:
        asyncio.run(_fill(server, events))
        results = [
            (topic, batch, db, pg.retrying(
                functools.partial(_dispatch, ctx, server, topic, batch, db, events)
            ))
            for topic, batch, db in SHAPES
        ]  # fmt: skip
    finally:
        server.stop()
    echo = ctx.echo(events)
    plain_noop = next(d for t, b, db, d in results if t == NOOP_TOPIC and not b)
    table = report.Table(
        [
            "handler",
            "database",
            "framing",
            "handled",
            "events/s (first→last)",
            "events/s (incl. start-up)",
            "peak RSS MiB",
            "vs echo per message",
            "vs plain no-op",
            "goal",
        ]
    )
    for topic, batch, db, got in results:
        noop = topic == NOOP_TOPIC
        goal = "-"
        if noop and db == "postgres":
            goal = "≥ 3x plain no-op" if batch else "≥ 0.8x echo"
        table.add(
            "no-op" if noop else "writes one row",
            "PostgreSQL" if db == "postgres" else "SQLite",
            f"batch {batch}" if batch else "plain",
            f"{got.handled:,} / {events:,}",
            report.number(got.rate),
            report.number(stats.rate(got.handled, got.wall)),
            f"{got.peak_rss:.0f}",
            report.ratio(got.rate, echo.rate),
            report.ratio(got.rate, plain_noop.rate) if batch else "-",
            goal,
        )
    method = (
        f"One embedded server holding {events:,} ≈200-byte events in each topic (published "
        "beforehand with the batch extension); for each row a fresh database and a new "
        "consumer group: `manage.py ensign_subscribe TOPIC --group G --from earliest "
        "--batch-size B` (B=0: plain Ensign framing) with the handlers of "
        "`bench/djapp/ensign_handlers.py` (each event also gets its inbox row in the "
        "handler's transaction). Rate = inbox rows between the first and last `handled_at`, "
        "polled every 0.5 s. Echo ceiling: the `ceilings` per-message echo with the same count."
    )
    return report.Result("dispatch", TITLE, method, table)

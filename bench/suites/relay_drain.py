"""``relay-drain``: outbox relays draining N rows to the server (issue 4)."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

from bench import djproject, pg, procs, rawclient, report, startline, stats
from bench.context import Context
from tests.support.server import EmbeddedServer

TITLE = "Outbox relay drain (issue 4)"
#: (database, relays, batch framing) of each row.
SHAPES = [
    ("postgres", 1, True),
    ("postgres", 2, True),
    ("postgres", 4, True),
    ("postgres", 1, False),
    ("sqlite", 1, True),
]


def drain_timeout(rows: int) -> float:
    """Seconds a drain may take before its relays are stopped (a floor of 50 rows/s)."""
    return min(900.0, 120.0 + rows / 50)


@dataclass(frozen=True)
class Drain:
    """One drain: rows acked, wall seconds (process start to exit), ack span."""

    db: str
    relays: int
    batch: bool
    rows: int
    acked: int
    wall: float
    ack_span: float
    relay_rss: str
    finished: bool

    @property
    def rate(self) -> float:
        """Acks per second between the first and the last ack."""
        return stats.rate(self.acked - 1, self.ack_span)

    @property
    def wall_rate(self) -> float:
        """Acks per second including the relays' start-up."""
        return stats.rate(self.acked, self.wall)


def drain(ctx: Context, server: EmbeddedServer, shape: tuple[str, int, bool]) -> Drain:
    """Fill a fresh database with rows and drain it with the shape's relays."""
    db, relays, batch = shape
    rows = ctx.events
    project = djproject.Project(db, ctx.workdir, server).create()
    try:
        topic = f"drain-{db}-{relays}-{'batch' if batch else 'plain'}"
        project.manage_json("bench_fill_outbox", "--count", str(rows), "--topic", topic)
        args = ("ensign_publish_outbox", "--once") if batch else ("bench_relay",)
        log = ctx.workdir / f"{topic}.log"
        cue = ctx.workdir / f"{topic}-cue"
        cue.mkdir()
        started = time.perf_counter()
        children = [
            project.start_module("bench.startline", str(cue), *args, log=log) for _ in range(relays)
        ]
        startline.release(cue, children, timeout=120)
        with procs.RssSampler(children[0].pid) as rss:
            finished = procs.wait_all(children, drain_timeout(rows))
        wall = time.perf_counter() - started
        codes = [child.returncode for child in children]
        if finished and any(codes):
            raise RuntimeError(f"a relay exited with {codes}:\n{log.read_text()[-3000:]}")
        got = project.manage_json("bench_outbox_stats", "--topic", topic)
    finally:
        project.drop()
    acked = int(got["counts"].get("acked", 0))
    span = (got["last_ack"] or 0.0) - (got["first_ack"] or 0.0)
    peak = f"{max(rss.samples):.0f}" if rss.samples else "-"
    return Drain(db, relays, batch, rows, acked, wall, span, peak, finished)


def run(ctx: Context) -> report.Result:
    """Drain the rows of each shape; compare with the claim loop and the echo."""
    server = rawclient.start_server(ctx.workdir)
    try:
        drains = [pg.retrying(functools.partial(drain, ctx, server, shape)) for shape in SHAPES]
    finally:
        server.stop()
    echo = ctx.echo(ctx.events)
    table = report.Table(
        [
            "database",
            "relays",
            "framing",
            "rows acked",
            "events/s (first→last ack)",
            "events/s (incl. start-up)",
            "first relay peak RSS MiB",
            "same-run ceiling",
            "ceiling /s",
            "ratio",
            "goal",
        ]
    )
    for d in drains:
        if d.batch and d.db == "postgres":
            claim = ctx.pg_claim(ctx.events, d.relays)
            ceiling = (f"PG claim loop, {d.relays} worker(s)", claim.rate, "≥ 0.5x")
        else:
            ceiling = ("echo, per message", echo.rate, "≥ 0.8x")
        table.add(
            "PostgreSQL" if d.db == "postgres" else "SQLite",
            d.relays,
            "batch extension" if d.batch else "plain (batch=False)",
            f"{d.acked:,} / {d.rows:,}" + ("" if d.finished else " (stopped)"),
            report.number(d.rate),
            report.number(d.wall_rate),
            d.relay_rss,
            ceiling[0],
            report.number(ceiling[1]),
            report.ratio(d.rate, ceiling[1]),
            ceiling[2] if d.db == "postgres" else "-",
        )
    method = (
        f"For each row: a fresh database (PostgreSQL scratch database or SQLite file in WAL "
        f"mode), {ctx.events:,} pending outbox rows "
        "written by `bench_fill_outbox` (≈200-byte "
        "JSON, a distinct ordering key per row as model signals write them), then N relay "
        "processes `manage.py ensign_publish_outbox --once` against one embedded server; "
        "the plain-framing row runs the same `Relay` with a client built with `batch=False` "
        "(`bench_relay`), as the command has no switch for it. The processes start together "
        "and each runs its command once all have imported Django, the app and grpc "
        "(`bench/startline.py`), so no relay's start-up takes CPU from another's drain. "
        "Rate = acks between the first and last `acked_at`; the start-up column counts from "
        "the processes' start. Ceilings: `ceilings` method, same row count and worker count."
    )
    notes = [
        f"{'PostgreSQL' if d.db == 'postgres' else 'SQLite'}, {d.relays} relay(s): stopped "
        f"after {d.wall:.0f} s (limit {drain_timeout(d.rows):.0f} s) with {d.acked:,} of "
        f"{d.rows:,} rows acked; the rate is over the rows acked by then."
        for d in drains
        if not d.finished
    ]
    return report.Result("relay-drain", TITLE, method, table, notes)

"""``relay-drain``: outbox relays draining N rows to the server (issue 4)."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

from bench import cpuuse, djproject, pg, procs, rawclient, report, startline, stats
from bench.context import Context
from tests.support.server import EmbeddedServer

TITLE = "Outbox relay drain (issue 4)"
#: The label of each kind of drain: the relay command, the same relay with plain framing,
#: and the floor (``bench_floor_relay``).
KINDS = {
    "batch": "batch extension",
    "plain": "plain (batch=False)",
    "floor": "floor: bare relay, batch extension",
}
#: (database, relays, kind) of each row.
SHAPES = [
    ("postgres", 1, "batch"),
    ("postgres", 2, "batch"),
    ("postgres", 4, "batch"),
    ("postgres", 1, "plain"),
    ("postgres", 1, "floor"),
    ("postgres", 2, "floor"),
    ("sqlite", 1, "batch"),
]


def _command(kind: str, topic: str) -> tuple[str, ...]:
    """The management command (and its arguments) each process of a ``kind`` drain runs."""
    return {
        "batch": ("ensign_publish_outbox", "--once"),
        "plain": ("bench_relay",),
        "floor": ("bench_floor_relay", "--topic", topic),
    }[kind]


def drain_timeout(rows: int) -> float:
    """Seconds a drain may take before its relays are stopped (a floor of 50 rows/s)."""
    return min(900.0, 120.0 + rows / 50)


@dataclass(frozen=True)
class Drain:
    """One drain: rows acked, wall seconds (process start to exit), ack span."""

    db: str
    relays: int
    kind: str
    rows: int
    acked: int
    wall: float
    ack_span: float
    relay_rss: str
    finished: bool
    #: CPU seconds of the drain (None when unknown, or when a relay was stopped): the
    #: relays' commands together, from their start to their return; the server and the
    #: whole machine from the cue to the last relay's exit.
    relays_cpu: float | None
    server_cpu: float | None
    machine_cpu: float | None

    @property
    def rate(self) -> float:
        """Acks per second between the first and the last ack."""
        return stats.rate(self.acked - 1, self.ack_span)

    @property
    def wall_rate(self) -> float:
        """Acks per second including the relays' start-up."""
        return stats.rate(self.acked, self.wall)

    def cpu_split(self) -> str:
        """CPU microseconds per acked event: ``relays · server · the rest`` of the machine.

        The rest is PostgreSQL's processes and anything else that ran meanwhile. It is a
        difference of two kinds of reading (the kernel's 10 ms ticks, the scheduler's
        runtime), so a rest below zero (a tiny run) shows as "-".
        """
        parts = [self.relays_cpu, self.server_cpu]
        rest = None
        if self.machine_cpu is not None and None not in parts:
            rest = self.machine_cpu - sum(part or 0.0 for part in parts)
        parts.append(rest if rest is None or rest >= 0 else None)
        return " · ".join(report.figure(cpuuse.per_event_us(p, self.acked)) for p in parts)

    @property
    def machine_us(self) -> float | None:
        """The whole machine's CPU microseconds per acked event."""
        return cpuuse.per_event_us(self.machine_cpu, self.acked)


def drain(ctx: Context, server: EmbeddedServer, shape: tuple[str, int, str]) -> Drain:
    """Fill a fresh database with rows and drain it with the shape's relays."""
    db, relays, kind = shape
    rows = ctx.events
    project = djproject.Project(db, ctx.workdir, server).create()
    try:
        topic = f"drain-{db}-{relays}-{kind}"
        project.manage_json("bench_fill_outbox", "--count", str(rows), "--topic", topic)
        args = _command(kind, topic)
        log = ctx.workdir / f"{topic}.log"
        cue = ctx.workdir / f"{topic}-cue"
        cue.mkdir()
        started = time.perf_counter()
        children = [
            project.start_module("bench.startline", str(cue), *args, log=log) for _ in range(relays)
        ]
        startline.release(cue, children, timeout=120)
        machine_start = cpuuse.machine_busy_seconds()
        server_start = _server_cpu(server)
        with procs.RssSampler(children[0].pid) as rss:
            finished = procs.wait_all(children, drain_timeout(rows))
        wall = time.perf_counter() - started
        machine_cpu = cpuuse.busy_between(machine_start, cpuuse.machine_busy_seconds())
        server_cpu = cpuuse.busy_between(server_start, _server_cpu(server))
        codes = [child.returncode for child in children]
        if finished and any(codes):
            raise RuntimeError(f"a relay exited with {codes}:\n{log.read_text()[-3000:]}")
        got = project.manage_json("bench_outbox_stats", "--topic", topic)
    finally:
        project.drop()
    acked = int(got["counts"].get("acked", 0))
    span = (got["last_ack"] or 0.0) - (got["first_ack"] or 0.0)
    peak = f"{max(rss.samples):.0f}" if rss.samples else "-"
    return Drain(
        db,
        relays,
        kind,
        rows,
        acked,
        wall,
        span,
        peak,
        finished,
        # A stopped relay wrote no reading: the split would count its CPU as the rest's.
        relays_cpu=startline.command_cpu(cue, relays) if finished else None,
        server_cpu=server_cpu if finished else None,
        machine_cpu=machine_cpu if finished else None,
    )


def _server_cpu(server: EmbeddedServer) -> float | None:
    return cpuuse.process_seconds(server.process.pid) if server.process else None


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
            "CPU µs/ev: relays · server · rest",
            "machine CPU µs/ev",
            "ceiling's machine CPU µs/ev",
            "CPU µs/ev the goal allows",
        ]
    )
    for d in drains:
        if d.kind != "plain" and d.db == "postgres":
            claim = ctx.pg_claim(ctx.events, d.relays)
            label, rate, goal = f"PG claim loop, {d.relays} worker(s)", claim.rate, 0.5
            ceiling_us = claim.machine_us
        else:
            label, rate, goal, ceiling_us = "echo, per message", echo.rate, 0.8, None
        shown_goal = goal if d.db == "postgres" and d.kind != "floor" else None
        table.add(
            "PostgreSQL" if d.db == "postgres" else "SQLite",
            d.relays,
            KINDS[d.kind],
            f"{d.acked:,} / {d.rows:,}" + ("" if d.finished else " (stopped)"),
            report.number(d.rate),
            report.number(d.wall_rate),
            d.relay_rss,
            label,
            report.number(rate),
            report.ratio(d.rate, rate),
            "-" if shown_goal is None else f"≥ {shown_goal}x",
            d.cpu_split(),
            report.figure(d.machine_us),
            report.figure(ceiling_us),
            "-" if shown_goal is None else report.figure(cpuuse.budget_us(rate, shown_goal)),
        )
    method = (
        f"For each row: a fresh database (PostgreSQL scratch database or SQLite file in WAL "
        f"mode), {ctx.events:,} pending outbox rows "
        "written by `bench_fill_outbox` (≈200-byte "
        "JSON, a distinct ordering key per row as model signals write them), then N relay "
        "processes `manage.py ensign_publish_outbox --once` against one embedded server; "
        "the plain-framing row runs the same `Relay` with a client built with `batch=False` "
        "(`bench_relay`), as the command has no switch for it. The floor rows run "
        "`bench_floor_relay`: the relay's claim and ack statements and the SDK's frame "
        "encoders on a raw Publish stream, with none of the relay's or the SDK's per-event "
        "objects, retries or deadlines (the least a Python relay on this stack does; no "
        "goal). The processes start together "
        "and each runs its command once all have imported Django, the app and grpc "
        "(`bench/startline.py`), so no relay's start-up takes CPU from another's drain. "
        "Rate = acks between the first and last `acked_at`; the start-up column counts from "
        "the processes' start. Ceilings: `ceilings` method, same row count and worker count. "
        "CPU per acked event, from the cue to the last relay's exit (so it includes each "
        "process's connecting and exit, not only the span the rate is taken over): the "
        "relays' commands (`time.process_time()`, every thread), the server (`/proc`), and "
        "the rest of the machine's busy time (`/proc/stat`, steal not counted: PostgreSQL "
        "and anything else); none for a drain that was stopped. The claim loop's is the "
        "machine's busy time over its drain, client included. The CPU the goal allows is "
        "what a drain at the goal's rate may spend per event with every core busy: cores "
        "/ (goal * ceiling rate); a drain that needs more than that cannot reach the goal "
        "on this machine without spending less."
    )
    notes = [
        f"{'PostgreSQL' if d.db == 'postgres' else 'SQLite'}, {d.relays} relay(s), "
        f"{KINDS[d.kind]}: stopped "
        f"after {d.wall:.0f} s (limit {drain_timeout(d.rows):.0f} s) with {d.acked:,} of "
        f"{d.rows:,} rows acked; the rate is over the rows acked by then."
        for d in drains
        if not d.finished
    ]
    return report.Result("relay-drain", TITLE, method, table, notes)

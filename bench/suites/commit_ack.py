"""``commit-ack``: latency from a Django commit to the server's ack, relay running (issue 4)."""

from __future__ import annotations

import functools

from bench import djproject, pg, procs, rawclient, report, stats
from bench.context import Context
from tests.support.server import EmbeddedServer

TITLE = "Outbox commit→ack latency (issue 4)"
#: (database, target events per second) of each row.
SHAPES = [("postgres", 200), ("postgres", 1000), ("sqlite", 200)]
#: Seconds of steady writing per row at each scale.
SECONDS = {"tiny": 1, "quick": 5, "full": 20}


def _measure(ctx: Context, server: EmbeddedServer, db: str, rate: int) -> dict[str, float]:
    project = djproject.Project(db, ctx.workdir, server).create()
    topic = f"commit-ack-{db}-{rate}"
    relay = project.start("ensign_publish_outbox", log=ctx.workdir / f"{topic}.log")
    try:
        # Warm up: the relay connects, the topic gets created, caches fill.
        project.manage_json("bench_commit_ack", "--rate", "20", "--count", "20", "--topic", topic)
        count = max(20, rate * SECONDS.get(ctx.scale, 5))
        got = project.manage_json(
            "bench_commit_ack", "--rate", str(rate), "--count", str(count), "--topic", topic
        )
    finally:
        procs.stop(relay)
        project.drop()
    latencies = [float(x) for x in got["latencies"]]
    return {
        "rows": float(got["rows"]),
        "acked": float(got["acked"]),
        "achieved": stats.rate(int(got["rows"]), float(got["write_s"])),
        "writers": float(got["writers"]),
        "p50": stats.ms(stats.percentile(latencies, 0.5)),
        "p99": stats.ms(stats.percentile(latencies, 0.99)),
        "max": stats.ms(max(latencies, default=0.0)),
    }


def run(ctx: Context) -> report.Result:
    """Commit rows at each target rate with a relay running; latency percentiles."""
    server = rawclient.start_server(ctx.workdir)
    try:
        results = [
            (db, rate, pg.retrying(functools.partial(_measure, ctx, server, db, rate)))
            for db, rate in SHAPES
        ]
    finally:
        server.stop()
    table = report.Table(
        [
            "database",
            "relay wake-up",
            "target ev/s",
            "achieved ev/s",
            "writers",
            "rows acked",
            "p50 ms",
            "p99 ms",
            "max ms",
            "goal",
        ]
    )
    for db, rate, got in results:
        table.add(
            "PostgreSQL" if db == "postgres" else "SQLite",
            "LISTEN/NOTIFY" if db == "postgres" else "polling",
            report.number(rate),
            report.number(got["achieved"]),
            f"{got['writers']:.0f}",
            f"{got['acked']:,.0f} / {got['rows']:,.0f}",
            f"{got['p50']:.1f}",
            f"{got['p99']:.1f}",
            f"{got['max']:.1f}",
            "p50 ≤ 2 ms, p99 ≤ 10 ms" if db == "postgres" and rate == 200 else "-",
        )
    method = (
        "One embedded server, one relay process in loop mode (`manage.py "
        "ensign_publish_outbox`, default settings) on a fresh database; `bench_commit_ack` "
        "commits one outbox row per transaction (`outbox.publish`, ≈200-byte JSON) from one "
        "writer thread per 100 ev/s of target rate, paced to the target rate for "
        f"{SECONDS.get(ctx.scale, 5)} s after a 20-row warm-up, then waits for every ack. "
        "Latency = the server's commit time carried by the Ack (`acked_at`) minus the wall "
        "time right after the writer's commit returned (same machine clock)."
    )
    return report.Result("commit-ack", TITLE, method, table)

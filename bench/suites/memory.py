"""``memory``: resident memory of the SDK, a relay and the server over a long run."""

from __future__ import annotations

import functools
import time

from bench import djproject, pg, procs, rawclient, report, sdkrun, stats
from bench.context import Context
from tests.support.server import EmbeddedServer

TITLE = "Memory over a long run (issues 2 to 4)"


def _at(samples: list[float], fraction: float) -> float:
    """The sample at ``fraction`` of the run (0.0 when none)."""
    if not samples:
        return 0.0
    return samples[min(len(samples) - 1, int(fraction * (len(samples) - 1)))]


def _relay(ctx: Context, server: EmbeddedServer) -> tuple[list[float], int, float]:
    project = djproject.Project("postgres", ctx.workdir, server).create()
    try:
        topic = "memory-relay"
        project.manage_json(
            "bench_fill_outbox", "--count", str(ctx.memory_events), "--topic", topic
        )
        started = time.perf_counter()
        child = project.start("ensign_publish_outbox", "--once", log=ctx.workdir / "memory.log")
        with procs.RssSampler(child.pid, interval=1.0) as rss:
            finished = procs.wait_all([child], 120 + ctx.memory_events / 50)
        seconds = time.perf_counter() - started
        if finished and child.returncode:
            raise RuntimeError(f"the relay exited with {child.returncode}")
        got = project.manage_json("bench_outbox_stats", "--topic", topic)
    finally:
        project.drop()
    return rss.samples, int(got["counts"].get("acked", 0)), seconds


def run(ctx: Context) -> report.Result:
    """Publish ``ctx.memory_events`` events with the SDK, then drain as many with a relay."""
    events = ctx.memory_events
    server = rawclient.start_server(ctx.workdir)
    assert server.process is not None
    try:
        with procs.RssSampler(server.process.pid, interval=1.0) as server_rss:
            started = time.perf_counter()
            sdk = sdkrun.run(server, "ours", events, "memory-sdk", timeout=3600)
            sdk_seconds = time.perf_counter() - started
            relay_samples, relay_acked, relay_seconds = pg.retrying(
                functools.partial(_relay, ctx, server)
            )
    finally:
        server.stop()
    table = report.Table(
        [
            "process",
            "events",
            "seconds",
            "events/s",
            "RSS at 10 % MiB",
            "at 50 %",
            "at end",
            "peak",
            "end - 10 %",
        ]
    )

    def row(label: str, count: int, seconds: float, samples: list[float]) -> None:
        early, end = _at(samples, 0.1), _at(samples, 1.0)
        table.add(
            label,
            report.number(count),
            f"{seconds:.0f}",
            report.number(stats.rate(count, seconds)),
            f"{early:.0f}",
            f"{_at(samples, 0.5):.0f}",
            f"{end:.0f}",
            f"{max(samples, default=0.0):.0f}",
            f"{end - early:+.0f} MiB",
        )

    row("SDK publisher (django_ensign.client, batch)", sdk.answered, sdk_seconds, sdk.rss())
    row("relay (ensign_publish_outbox --once, PostgreSQL)", relay_acked, relay_seconds,
        relay_samples)  # fmt: skip
    row("embedded server (both runs)", sdk.answered + relay_acked, sdk_seconds + relay_seconds,
        server_rss.samples)  # fmt: skip
    method = (
        f"One embedded server; `bench/sdk_script.py` publishes {events:,} ≈200-byte events "
        "with our client (one `publish` per event, default window 5,000) and samples its own "
        "RSS every 5 % of the events; then "
        f"{events:,} outbox rows are written to a fresh PostgreSQL database and one relay "
        "drains them (`--once`), its RSS sampled every second; the server's RSS is sampled "
        "every second throughout. Percent columns are positions in each process's samples."
    )
    notes = []
    if sdk.lost:
        notes.append(f"The SDK run ended with {sdk.lost:,} events without an outcome.")
    return report.Result("memory", TITLE, method, table, notes)

"""``ceilings``: the bare gRPC echo, SQLite insert loop and PostgreSQL claim loop alone."""

from __future__ import annotations

from bench import frames, report
from bench.ceilings import echo, pg_claim, sqlite
from bench.context import Context

TITLE = "Same-run ceilings"


def latency_events(ctx: Context) -> int:
    """Events for the one-in-flight latency runs (round trips are slow, keep them short)."""
    return max(200, min(2_000, ctx.events // 10))


def run(ctx: Context) -> report.Result:
    """Measure the ceilings every other benchmark divides by."""
    table = report.Table(["ceiling", "count", "per second", "p50 ms", "p99 ms", "setup"])
    single = ctx.echo(ctx.events)
    table.add(
        "gRPC bidi echo, one frame per message",
        report.number(single.acked),
        report.number(single.rate),
        f"{single.p(0.5):.2f}",
        f"{single.p(0.99):.2f}",
        f"window {echo.WINDOW}",
    )
    alone = ctx.echo(latency_events(ctx), window=1)
    table.add(
        "gRPC bidi echo, one frame per message",
        report.number(alone.acked),
        report.number(alone.rate),
        f"{alone.p(0.5):.2f}",
        f"{alone.p(0.99):.2f}",
        "window 1 (round trip)",
    )
    batched = ctx.echo(ctx.events, batch=echo.BATCH)
    table.add(
        f"gRPC bidi echo, {echo.BATCH} frames per message",
        report.number(batched.acked),
        report.number(batched.rate),
        f"{batched.p(0.5):.2f}",
        f"{batched.p(0.99):.2f}",
        f"window {echo.BATCH_WINDOW}",
    )
    rows = ctx.sqlite(ctx.events)
    table.add(
        "SQLite insert loop (WAL, synchronous=FULL)",
        report.number(rows.rows),
        report.number(rows.rate),
        "-",
        "-",
        f"{sqlite.BATCH} rows per transaction",
    )
    for workers in (1, 2, 4):
        claims = ctx.pg_claim(ctx.events, workers)
        table.add(
            "PostgreSQL SKIP LOCKED claim + UPDATE",
            report.number(claims.rows),
            report.number(claims.rate),
            "-",
            "-",
            f"{workers} worker(s), {pg_claim.BATCH} rows per claim",
        )
    method = (
        f"Echo: a grpc.aio generic bidi handler in its own process on loopback answers each "
        f"request with one ack-sized reply; the client sends real serialized publish requests "
        f"({frames.PAYLOAD_BYTES}-byte JSON payload, "
        f"{frames.Frames(b'x' * 16, frames.event_bytes()).single_request_size()} bytes per "
        f"frame) and parses every reply, exactly as the server-ingest client does. SQLite: the "
        f"embedded server's own `events` table and rows, fresh file. PostgreSQL: an "
        f"outbox-shaped scratch table in a scratch database, claim (`SELECT … FOR UPDATE SKIP "
        f"LOCKED` inside an `UPDATE`) then ack (`UPDATE … WHERE lease_token`), one transaction "
        f"each, synchronous_commit on."
    )
    return report.Result("ceilings", TITLE, method, table)

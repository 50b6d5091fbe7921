"""``server-ingest``: publish to the embedded server with the stubs, per event and batched."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from bench import frames, procs, rawclient, report, streamdrive
from bench.ceilings import echo
from bench.context import Context
from bench.suites.ceilings import latency_events

TITLE = "Server publish ingest (issue 2)"


@dataclass
class IngestRun:
    """A stream run and the server's CPU seconds spent on it."""

    stream: streamdrive.StreamRun
    server_cpu: float

    def cpu_us_per_event(self) -> str:
        """Server CPU microseconds per answered event."""
        answered = self.stream.acked + self.stream.nacked
        return f"{self.server_cpu * 1e6 / answered:.0f}" if answered else "-"


async def _publish(
    session: rawclient.Session, pid: int, topic: str, events: int, batch: int | None, window: int
) -> IngestRun:
    topic_id = await session.create_topic(topic)
    call, ready = await session.open_publish(topic)
    splicer = frames.Frames(topic_id, frames.event_bytes()).splicer()
    if batch is not None:
        if not ready.HasField("batch"):
            raise RuntimeError("the server did not offer the batch extension")
        batch = min(batch, ready.batch.max_events)
        events -= events % batch
    per_request = batch or 1

    def make(index: int) -> tuple[bytes, int]:
        if batch:
            return splicer.batch(index * batch, batch), batch
        return splicer.single(index), 1

    cpu_before = procs.cpu_seconds(pid)
    run = await streamdrive.drive(call, events, per_request, window, make, frames.count_outcomes)
    cpu = procs.cpu_seconds(pid) - cpu_before
    await call.done_writing()
    while await call.read() is not streamdrive.EOF:
        pass
    return IngestRun(run, cpu)


async def _measure(ctx: Context) -> tuple[IngestRun, IngestRun, IngestRun]:
    server = rawclient.start_server(ctx.workdir)
    try:
        assert server.process is not None
        pid = server.process.pid
        session = rawclient.connect(server)
        try:
            single = await _publish(session, pid, "ingest-single", ctx.events, None, echo.WINDOW)
            alone = await _publish(session, pid, "ingest-alone", latency_events(ctx), None, 1)
            batched = await _publish(
                session, pid, "ingest-batch", ctx.events, echo.BATCH, echo.BATCH_WINDOW
            )
        finally:
            await session.channel.close()
    finally:
        server.stop()
    return single, alone, batched


def run(ctx: Context) -> report.Result:
    """Publish ``ctx.events`` events each way; compare with the same-run ceilings."""
    single, alone, batched = asyncio.run(_measure(ctx))
    echo_single = ctx.echo(ctx.events)
    echo_alone = ctx.echo(latency_events(ctx), window=1)
    echo_batch = ctx.echo(ctx.events, batch=echo.BATCH)
    sqlite = ctx.sqlite(ctx.events)
    table = report.Table(
        [
            "framing",
            "events",
            "events/s",
            "ack p50 ms",
            "ack p99 ms",
            "server CPU µs/event",
            "same-run ceiling",
            "ceiling /s",
            "ratio",
            "goal",
        ]
    )

    def row(label: str, got: IngestRun, ceiling: str, ceiling_rate: float, goal: str) -> None:
        s = got.stream
        table.add(
            label,
            report.number(s.acked),
            report.number(s.rate),
            f"{s.p(0.5):.2f}",
            f"{s.p(0.99):.2f}",
            got.cpu_us_per_event(),
            ceiling,
            report.number(ceiling_rate),
            report.ratio(s.rate, ceiling_rate),
            goal,
        )

    row(f"per event, window {echo.WINDOW}", single, "echo, per message", echo_single.rate, "≥ 0.8x")
    row("per event, window 1", alone, "echo, window 1", echo_alone.rate, "-")
    row(
        f"batch {echo.BATCH}, window {echo.BATCH_WINDOW}",
        batched,
        "SQLite insert loop",
        sqlite.rate,
        "≥ 0.5x",
    )
    row(
        f"batch {echo.BATCH}, window {echo.BATCH_WINDOW}",
        batched,
        f"echo, {echo.BATCH} per message",
        echo_batch.rate,
        "-",
    )
    notes = []
    nacked = single.stream.nacked + alone.stream.nacked + batched.stream.nacked
    if nacked:
        notes.append(f"{nacked:,} events were nacked (counted in events/s, not in `events`).")
    method = (
        "A fresh embedded server (`python -m django_ensign.server serve`, own process, fresh "
        "data dir, durable group commit) on loopback; the bench authenticates over HTTP and "
        "publishes with the generated messages over one Publish stream per row, sending "
        "pre-serialized frames so the client's cost equals the echo client's. Ack latency is "
        "each event's ack arrival minus its send time, at the stated window of unanswered "
        "events. Batch rows use the negotiated extension (`StreamReady.batch` → "
        "`PublisherRequest.events`, `PublisherReply.replies`). Server CPU from /proc."
    )
    return report.Result("server-ingest", TITLE, method, table, notes)

"""Ceiling: a bare grpcio.aio bidi echo of the publish stream's exact frames."""

from __future__ import annotations

from typing import Any

import grpc

from bench import frames, procs, streamdrive
from bench.ceilings import echo_server
from tests.support.server import free_port

#: Events allowed in flight on a stream in every stream benchmark.
WINDOW = 1000
#: Events per request in batch framing (the embedded server's BatchExtension.max_events).
BATCH = 1000
#: Events allowed in flight in batch framing (several batches, so group commit can work).
BATCH_WINDOW = 4 * BATCH


async def measure(
    events: int, batch: int | None = None, window: int | None = None
) -> streamdrive.StreamRun:
    """Echo ``events`` publish frames one per message, or ``batch`` per message."""
    if window is None:
        window = BATCH_WINDOW if batch else WINDOW
    shape = frames.Frames(topic_id=b"\x01" * 16, event=frames.event_bytes())
    per_request = batch or 1
    reply = shape.batch_reply(per_request) if batch else shape.ack_reply()
    port = free_port()
    server = procs.python_module(
        "bench.ceilings.echo_server", "--port", str(port), "--reply", reply.hex()
    )
    try:
        procs.wait_for_line(server, b"ready")
        splicer = shape.splicer()

        def make(index: int) -> tuple[bytes, int]:
            if batch:
                return splicer.batch(index * batch, batch), batch
            return splicer.single(index), 1

        channel: Any
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await channel.channel_ready()
            call = channel.stream_stream(echo_server.METHOD)()
            if batch and events % batch:
                events -= events % batch
            run = await streamdrive.drive(
                call, events, per_request, window, make, frames.count_outcomes
            )
            await call.done_writing()
            call.cancel()
        return run
    finally:
        procs.stop(server)

"""Drive a bidi stream of pre-serialized requests with a bounded window; time every reply."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from bench import stats

#: What ``call.read()`` returns at the end of a stream (missing from grpc-stubs).
EOF: Any = grpc.aio.EOF  # type: ignore[attr-defined]

#: Builds request ``n`` of a run: (serialized bytes, events it carries).
RequestMaker = Callable[[int], tuple[bytes, int]]
#: Parses a reply: (events acked, events nacked).
ReplyCounter = Callable[[bytes], tuple[int, int]]


@dataclass
class StreamRun:
    """Events acked and nacked, elapsed seconds, and each event's ack latency."""

    events: int
    acked: int = 0
    nacked: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Events answered per second."""
        return stats.rate(self.acked + self.nacked, self.seconds)

    def p(self, fraction: float) -> float:
        """Latency percentile in milliseconds."""
        return stats.ms(stats.percentile(self.latencies, fraction))


async def drive(
    call: Any,
    events: int,
    per_request: int,
    window: int,
    make_request: RequestMaker,
    count_reply: ReplyCounter,
) -> StreamRun:
    """Send ``events`` events, ``per_request`` per request, at most ``window`` unanswered.

    Replies are matched to requests in order (one stream, one topic: the server answers
    in commit order), so each event's latency is its reply's arrival minus its send time.
    """
    run = StreamRun(events=events)
    sent: collections.deque[list[Any]] = collections.deque()  # [send time, events left]
    room = asyncio.Event()
    room.set()
    in_flight = 0

    async def writer() -> None:
        nonlocal in_flight
        index = 0
        done = 0
        while done < events:
            units = min(per_request, events - done)
            while in_flight + units > window:
                room.clear()
                await room.wait()
            payload, units = make_request(index)
            in_flight += units
            sent.append([time.perf_counter(), units])
            await call.write(payload)
            index += 1
            done += units

    started = time.perf_counter()
    task = asyncio.create_task(writer())
    try:
        answered = 0
        while answered < events:
            reply = await call.read()
            if reply is EOF:
                raise RuntimeError("stream ended before every event was answered")
            acked, nacked = count_reply(reply)
            now = time.perf_counter()
            n = acked + nacked
            run.acked += acked
            run.nacked += nacked
            answered += n
            in_flight -= n
            room.set()
            while n:
                head = sent[0]
                take = min(n, head[1])
                run.latencies.extend([now - head[0]] * take)
                head[1] -= take
                n -= take
                if head[1] == 0:
                    sent.popleft()
        run.seconds = time.perf_counter() - started
        await task
    finally:
        if not task.done():
            task.cancel()
    return run

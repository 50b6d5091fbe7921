"""Publish N events with one SDK and print a JSON result line; run as a script, not imported.

``python bench/sdk_script.py --sdk ours|official --events N --topic T [--no-batch]``

Runs in the SDK's own interpreter (the official SDK lives in its own virtualenv with its own
grpcio and protobuf), so it imports nothing from ``bench``. Connection settings come from
``ENSIGN_*`` environment variables. Both SDKs are driven identically: one ``publish`` call
per event with an async ``on_ack``/``on_nack``, then wait for every outcome.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

PAYLOAD = (b'{"sensor": "bench", "temp": 21.5, "units": "celsius", "pad": "' + b"x" * 200)[
    :198
] + b'"}'


#: Latencies kept for the percentiles (all of them up to this many events).
LATENCY_SAMPLE = 100_000


def rss_mib() -> float:
    """This process's resident set size in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def make_client(sdk: str, batch: bool) -> tuple[Any, Any]:
    """The SDK's ``Ensign`` client (from the environment) and its ``Event`` class."""
    settings: dict[str, Any] = {
        "endpoint": os.environ["ENSIGN_ENDPOINT"],
        "insecure": True,
        "auth_url": os.environ["ENSIGN_AUTH_URL"],
    }
    if sdk == "official":
        from pyensign.ensign import Ensign as Official  # type: ignore[import-not-found]
        from pyensign.events import Event as OfficialEvent  # type: ignore[import-not-found]

        return Official(**settings), OfficialEvent
    from django_ensign.client import Ensign, Event

    return Ensign(**settings, batch=batch), Event


async def publish(args: argparse.Namespace) -> dict[str, Any]:
    """Publish, wait for every outcome (or the timeout), and measure."""
    client, event_class = make_client(args.sdk, not args.no_batch)
    await client.ensure_topic_exists(args.topic)
    sent: collections.deque[float] = collections.deque()
    # A fixed-size uniform sample of the latencies: keeping all of them would grow this
    # process by ~32 bytes an event and show up as the SDK's memory on a long run.
    latencies: list[float] = []
    rng = random.Random(0)
    settled = 0
    counts = {"acked": 0, "nacked": 0}
    finished = asyncio.Event()
    rss = [rss_mib()]

    def settle(kind: str) -> None:
        nonlocal settled
        latency = time.perf_counter() - sent.popleft()
        settled += 1
        if len(latencies) < LATENCY_SAMPLE:
            latencies.append(latency)
        else:
            slot = rng.randrange(settled)
            if slot < LATENCY_SAMPLE:
                latencies[slot] = latency
        counts[kind] += 1
        if counts["acked"] + counts["nacked"] >= args.events:
            finished.set()

    async def on_ack(ack: Any) -> None:
        settle("acked")

    async def on_nack(nack: Any) -> None:
        settle("nacked")

    sample_every = max(1, args.events // 20)
    started = time.perf_counter()
    for index in range(args.events):
        event = event_class(PAYLOAD, "application/json", schema_name="BenchReading")
        sent.append(time.perf_counter())
        await client.publish(args.topic, event, on_ack=on_ack, on_nack=on_nack)
        if index % sample_every == sample_every - 1:
            rss.append(rss_mib())
    published = time.perf_counter() - started
    timed_out = False
    try:
        await asyncio.wait_for(finished.wait(), args.timeout)
    except TimeoutError:
        timed_out = True
    seconds = time.perf_counter() - started
    rss.append(rss_mib())
    try:
        await asyncio.wait_for(client.close(), 30)
    except Exception as err:  # the official client may raise or hang on close
        print(f"close failed: {err!r}", file=sys.stderr)
    latencies.sort()

    def pct(fraction: float) -> float:
        if not latencies:
            return 0.0
        return latencies[min(len(latencies) - 1, int(fraction * len(latencies)))] * 1000

    return {
        "sdk": args.sdk,
        "batch": not args.no_batch,
        "events": args.events,
        "acked": counts["acked"],
        "nacked": counts["nacked"],
        "timed_out": timed_out,
        "publish_seconds": published,
        "seconds": seconds,
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
        "max_ms": pct(1.0),
        "rss_mib": rss,
    }


def main() -> int:
    """Parse arguments, run, print ``RESULT <json>``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--sdk", choices=["ours", "official"], required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--no-batch", action="store_true", help="ours: plain Ensign framing")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for acks")
    args = parser.parse_args()
    result = asyncio.run(publish(args))
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

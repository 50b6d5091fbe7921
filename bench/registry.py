"""The benchmarks by name, and the ones ``python -m bench`` runs when given none."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from bench import report
from bench.context import Context


@dataclass(frozen=True)
class Benchmark:
    """A named benchmark: its module under ``bench.suites`` and a one-line description."""

    name: str
    module: str
    summary: str
    default: bool = True
    needs_postgres: bool = False
    needs_pyensign: bool = False

    def runner(self) -> Callable[[Context], report.Result]:
        """The module's ``run`` function (imported on demand)."""
        module = importlib.import_module(f"bench.suites.{self.module}")
        runner: Callable[[Context], report.Result] = module.run
        return runner


BENCHMARKS = {
    b.name: b
    for b in [
        Benchmark(
            "ceilings",
            "ceilings",
            "bare gRPC echo, SQLite insert, PostgreSQL claim loop",
            needs_postgres=True,
        ),
        Benchmark("server-ingest", "server_ingest", "publish to the embedded server (issue 2)"),
        Benchmark(
            "sdk-publish",
            "sdk_publish",
            "django_ensign.client vs the official pyensign SDK (issue 3)",
            needs_pyensign=True,
        ),
        Benchmark(
            "relay-drain",
            "relay_drain",
            "outbox relays draining rows, PostgreSQL (1/2/4 relays) and SQLite (issue 4)",
            needs_postgres=True,
        ),
        Benchmark(
            "outbox-sql",
            "outbox_sql",
            "PostgreSQL's CPU and WAL per row: the relay's statements alone vs the claim loop",
            default=False,
            needs_postgres=True,
        ),
        Benchmark(
            "commit-ack",
            "commit_ack",
            "commit→ack latency at 200 and 1,000 ev/s with a running relay (issue 4)",
            needs_postgres=True,
        ),
        Benchmark(
            "save-cost",
            "save_cost",
            "cost of the signal-written outbox row on a model save (issue 4)",
            needs_postgres=True,
        ),
        Benchmark(
            "dispatch",
            "dispatch",
            "ensign_subscribe to a no-op and a row-writing handler, plain and batched (issue 5)",
            needs_postgres=True,
        ),
        Benchmark(
            "memory",
            "memory",
            "RSS of the SDK, a relay and the server over --memory-events events",
            needs_postgres=True,
        ),
    ]
}

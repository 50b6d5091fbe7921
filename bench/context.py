"""What every benchmark of one invocation shares: sizes, scratch space, same-run ceilings."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bench import pg, streamdrive
from bench.ceilings import echo as ceiling_echo
from bench.ceilings import pg_claim as ceiling_pg
from bench.ceilings import sqlite as ceiling_sqlite

T = TypeVar("T")

#: Events per measurement at each scale; ``--events`` overrides.
SCALES = {"tiny": 2_000, "quick": 10_000, "full": 100_000}
#: Events of the long memory runs at each scale; ``--memory-events`` overrides.
MEMORY_SCALES = {"tiny": 5_000, "quick": 100_000, "full": 1_000_000}


@dataclass
class Context:
    """Options of the run and the ceilings measured so far (each measured once per run)."""

    scale: str
    events: int
    memory_events: int
    workdir: Path
    _ceilings: dict[tuple[Any, ...], Any] = field(default_factory=dict)

    @property
    def slow_events(self) -> int:
        """Events for the database-bound runs (one transaction per event): a quarter."""
        return max(50, self.events // 4)

    def _once(self, key: tuple[Any, ...], measure: Callable[[], T]) -> T:
        if key not in self._ceilings:
            self._ceilings[key] = measure()
        result: T = self._ceilings[key]
        return result

    def echo(
        self, events: int, batch: int | None = None, window: int | None = None
    ) -> streamdrive.StreamRun:
        """The bare gRPC echo of ``events`` publish frames (per message, or ``batch`` each)."""
        return self._once(
            ("echo", events, batch, window),
            lambda: asyncio.run(ceiling_echo.measure(events, batch, window)),
        )

    def sqlite(self, rows: int) -> ceiling_sqlite.InsertRun:
        """The bare SQLite insert loop of ``rows`` event rows."""
        return self._once(
            ("sqlite", rows), lambda: ceiling_sqlite.measure(rows, directory=self.workdir)
        )

    def pg_claim(self, rows: int, workers: int = 1) -> ceiling_pg.ClaimRun:
        """The raw PostgreSQL claim + update loop over ``rows`` rows."""

        def run() -> ceiling_pg.ClaimRun:
            pg.recreate_database(ceiling_pg.DATABASE)
            try:
                return ceiling_pg.measure(rows, workers)
            finally:
                pg.drop_database(ceiling_pg.DATABASE)

        return self._once(("pg", rows, workers), lambda: pg.retrying(run))

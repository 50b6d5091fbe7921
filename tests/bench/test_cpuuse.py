"""``bench.cpuuse``: the machine's busy time, and the CPU a goal leaves per event."""

from __future__ import annotations

import sys
import time

import pytest

from bench import cpuuse


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/stat")
def test_busy_time_counts_the_cpu_this_process_burns() -> None:
    before = cpuuse.machine_busy_seconds()
    spent = time.process_time()
    while time.process_time() - spent < 0.3:
        pass
    busy = cpuuse.busy_between(before, cpuuse.machine_busy_seconds())
    assert busy is not None
    # The machine was busy at least while this process spun (ticks are 10 ms).
    assert busy >= 0.25


def test_a_reading_that_failed_gives_no_figure() -> None:
    assert cpuuse.busy_between(None, 5.0) is None
    assert cpuuse.per_event_us(None, 100) is None
    assert cpuuse.per_event_us(1.0, 0) is None
    assert cpuuse.per_event_us(0.5, 10_000) == pytest.approx(50.0)


def test_the_budget_is_what_every_core_allows_at_the_goal_rate() -> None:
    # Half of a 60,000 rows/s loop is 30,000 events/s: two cores give each 66.7 µs.
    assert cpuuse.budget_us(60_000, 0.5, cores=2) == pytest.approx(66.67, abs=0.01)
    assert cpuuse.budget_us(0, 0.5, cores=2) is None

"""Where a run's CPU went: the whole machine's busy time, and what a budget allows.

On two cores the relays, the server and PostgreSQL share the CPU the claim loop has to
itself, so a drain's rate says little without the CPU each event cost. These readings
come from ``/proc`` and are Linux-only; elsewhere they are None and tables print "-". In a
container, ``/proc/stat`` is the whole host's.
"""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float | None:
    """CPU seconds every core has spent busy since boot (user, nice, system, interrupts).

    Idle, I/O wait and steal (time the hypervisor gave to other guests) are not counted.
    """
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[1:8])
    return (user + nice + system + irq + softirq) / _TICKS


def process_seconds(pid: int) -> float | None:
    """User + system CPU seconds process ``pid`` has used, every thread; None if unreadable."""
    try:
        # The command name may hold spaces: split what follows its closing ")".
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS


def busy_between(start: float | None, end: float | None) -> float | None:
    """Seconds of CPU between two readings, None if either could not be taken."""
    return None if start is None or end is None else end - start


def per_event_us(seconds: float | None, events: int) -> float | None:
    """``seconds`` of CPU spread over ``events``, in microseconds each."""
    return None if seconds is None or not events else seconds / events * 1e6


def budget_us(ceiling_rate: float, goal: float, cores: int | None = None) -> float | None:
    """CPU microseconds per event a drain may spend and still reach ``goal`` times the ceiling.

    A drain at ``goal * ceiling_rate`` events/s on a machine with every core busy spends
    ``cores / rate`` seconds of CPU per event; spending more, it cannot go that fast.
    """
    if ceiling_rate <= 0:
        return None
    cores = cores or len(os.sched_getaffinity(0))
    return cores / (goal * ceiling_rate) * 1e6

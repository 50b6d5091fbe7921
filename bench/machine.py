"""What a run ran on: the machine, the load on it, and the versions of everything measured."""

from __future__ import annotations

import os
import platform
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

import google.protobuf
import grpc

from bench import pg


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / (1024 * 1024)
    except OSError:
        pass
    return 0.0


def load_average() -> str:
    """The 1/5/15-minute load averages, as ``/proc/loadavg`` shows them."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


@dataclass(frozen=True)
class Machine:
    """The host and software versions of one run."""

    cores: int
    cpu: str
    memory_gib: float
    system: str
    python: str
    grpcio: str
    protobuf: str
    sqlite: str
    postgresql: str

    def describe(self) -> str:
        """One line for the machine, one for the versions (Markdown)."""
        return (
            f"- Machine: {self.cores} cores, {self.cpu}, {self.memory_gib:.1f} GiB RAM, "
            f"{self.system}\n"
            f"- Versions: Python {self.python}, grpcio {self.grpcio}, protobuf {self.protobuf}, "
            f"SQLite {self.sqlite}, PostgreSQL {self.postgresql}"
        )


def current() -> Machine:
    """Inspect this machine (PostgreSQL's version is asked of the server, if it answers)."""
    return Machine(
        cores=os.cpu_count() or 0,
        cpu=_cpu_model(),
        memory_gib=_memory_gib(),
        system=f"{platform.system()} {platform.release()}",
        python=sys.version.split()[0],
        grpcio=grpc.__version__,
        protobuf=google.protobuf.__version__,
        sqlite=sqlite3.sqlite_version,
        postgresql=pg.server_version() or "unavailable",
    )

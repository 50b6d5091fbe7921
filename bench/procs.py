"""Child processes of a benchmark: start, wait for readiness, measure memory, stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from bench import cpuuse

ROOT = Path(__file__).resolve().parent.parent


def python_module(
    module: str, *args: str, env: dict[str, str] | None = None, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start ``python -m module args`` from the repository root."""
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        stdout=subprocess.PIPE if log is None else log.open("ab"),
        stderr=subprocess.STDOUT if log is not None else None,
    )


def wait_for_line(proc: subprocess.Popen[bytes], expected: bytes, timeout: float = 30.0) -> None:
    """Block until ``proc`` prints a line starting with ``expected``."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith(expected):
            return
        if not line and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {expected!r}")
    raise RuntimeError(f"no {expected!r} within {timeout}s")


def stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM, then SIGKILL if it does not exit within ``timeout``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def wait_all(children: Sequence[subprocess.Popen[bytes]], timeout: float) -> bool:
    """Wait for every child to exit; after ``timeout`` stop the rest. True if all finished."""
    deadline = time.monotonic() + timeout
    for child in children:
        try:
            child.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for late in children:
                stop(late)
            return False
    return True


def rss_mib(pid: int) -> float:
    """Resident set size of ``pid`` in MiB (0.0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds ``pid`` has used so far (0.0 if it is gone)."""
    return cpuuse.process_seconds(pid) or 0.0


class RssSampler:
    """Samples a process's RSS every ``interval`` seconds in a background thread."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            value = rss_mib(self.pid)
            if value:
                self.samples.append(value)
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> str:
        """``first → last (peak)`` in MiB."""
        if not self.samples:
            return "-"
        s = self.samples
        return f"{s[0]:.0f}→{s[-1]:.0f} (peak {max(s):.0f})"

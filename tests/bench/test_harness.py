"""``python -m bench NAME`` runs each benchmark end to end at a tiny size and records a table.

Only the harness is under test: no timing is asserted.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench import official_sdk
from bench.registry import BENCHMARKS
from tests.support.server import port_open

ROOT = Path(__file__).resolve().parents[2]


def _marks(name: str) -> list[pytest.MarkDecorator]:
    marks = [pytest.mark.slow, pytest.mark.timeout(600)]
    if BENCHMARKS[name].needs_postgres:
        marks.append(pytest.mark.postgres)
    if BENCHMARKS[name].needs_pyensign:
        marks.append(pytest.mark.pyensign)
    return marks


@pytest.mark.parametrize("name", [pytest.param(n, marks=_marks(n)) for n in BENCHMARKS])
def test_benchmark_runs_and_records_an_entry(name: str, tmp_path: Path) -> None:
    if BENCHMARKS[name].needs_postgres and not port_open(5432):
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    if BENCHMARKS[name].needs_pyensign:
        try:
            official_sdk.python()
        except (OSError, subprocess.CalledProcessError) as err:
            pytest.skip(f"could not install the official SDK (pyensign) in its own venv: {err}")
    output = tmp_path / "BENCHMARKS.md"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            name,
            "--scale",
            "tiny",
            "--events",
            "300",
            "--memory-events",
            "2000",
            "--output",
            str(output),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=560,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    recorded = output.read_text()
    assert f"`{name}`" in recorded
    table_lines = [line for line in recorded.splitlines() if line.startswith("| ")]
    assert len(table_lines) >= 2, recorded
    assert "- Versions: Python" in recorded
    assert f"`{name}`" in done.stdout


def test_unknown_benchmark_is_refused() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "no-such-bench", "--no-record"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "unknown benchmark" in done.stderr

"""``make demo`` (``scripts/demo.sh``): from nothing to every event acked and handled.

Runs the real script with its state in a temporary folder and on free ports, so
it neither touches ``example_project/`` nor collides with a demo already running.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.server import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]


def test_demo_ends_with_every_event_acked_and_handled(tmp_path: Path) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ENSIGN_", "DJANGO_", "DATABASE_URL"))
    }
    env.update(
        DEMO_DIR=str(tmp_path),
        ENSIGN_DEMO_PORT=str(free_port()),
        ENSIGN_DEMO_AUTH_PORT=str(free_port()),
        VENV=str(Path(sys.executable).parents[1]),
    )
    done = subprocess.run(
        ["bash", "scripts/demo.sh"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "events published to 'weather': 8" in out
    assert "acked by the server: 8 (dead: 0)" in out
    assert "handled by the 'weather' handler: 8 (inbox rows: 8)" in out
    assert len(re.findall(r"ReadingCreated\s+acked\s+committed \d{4}-\d\d-\d\dT", out)) == 6
    assert re.search(r"Admin: http://127\.0\.0\.1:\d+/admin/ \(user admin, password admin", out)
    # Its state stayed where it was told to, and every process it started is gone.
    assert (tmp_path / "db.sqlite3").exists()
    assert (tmp_path / "ensign-data" / "credentials.json").exists()
    leftover = subprocess.run(
        ["pgrep", "-f", str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert leftover.stdout == ""

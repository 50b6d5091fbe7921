"""``make demo`` (``scripts/demo.sh``): from nothing to every event acked and handled.

Runs the real script with its state in a temporary folder and on free ports, so
it neither touches ``example_project/`` nor collides with a demo already running.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.support.server import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]


def demo_env(demo_dir: Path) -> dict[str, str]:
    """The script's environment: its state in ``demo_dir``, every port free."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ENSIGN_", "DJANGO_", "DATABASE_URL"))
    }
    env.update(
        DEMO_DIR=str(demo_dir),
        ENSIGN_DEMO_PORT=str(free_port()),
        ENSIGN_DEMO_AUTH_PORT=str(free_port()),
        DEMO_WEB_PORT=str(free_port()),
        VENV=str(Path(sys.executable).parents[1]),
    )
    return env


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_demo_ends_with_every_event_acked_and_handled(tmp_path: Path) -> None:
    env = demo_env(tmp_path)
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


def test_demo_serve_keeps_the_pipeline_running_until_stopped(tmp_path: Path) -> None:
    env = demo_env(tmp_path)
    web_port = int(env["DEMO_WEB_PORT"])
    script = subprocess.Popen(
        ["bash", "scripts/demo.sh", "--serve"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert script.stdout is not None
        for line in script.stdout:  # the script announces each step; runserver comes last
            if line.startswith("Logs:"):
                break
        else:
            pytest.fail(f"demo.sh --serve exited {script.wait()} before serving")
        children = [
            int(pid)
            for pid in subprocess.run(
                ["ps", "-o", "pid=", "--ppid", str(script.pid)], capture_output=True, text=True
            ).stdout.split()
        ]
        assert len(children) == 4  # server, relay, subscriber, runserver

        # A reading saved now travels through the running relay and subscriber by itself.
        manage_env = {**env, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
        for args in (
            ["record_readings", "--count", "1", "--no-changes"],
            ["weather_report", "--wait", "handled", "--timeout", "60", "--quiet"],
        ):
            subprocess.run(
                [sys.executable, "manage.py", *args],
                cwd=ROOT,
                env=manage_env,
                check=True,
                timeout=90,
            )
        with urllib.request.urlopen(
            f"http://127.0.0.1:{web_port}/admin/login/", timeout=30
        ) as page:
            assert page.status == 200

        script.send_signal(signal.SIGTERM)
        assert script.wait(timeout=60) != 0
        assert [pid for pid in children if alive(pid)] == []
    finally:
        if script.poll() is None:
            script.kill()
            script.wait()

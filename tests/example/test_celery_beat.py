"""The example's Celery app: `celery -A example_project worker -B` drains the outbox."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.example.conftest import ROOT, ExampleProject

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.timeout(180)]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_worker_with_beat_publishes_recorded_readings(
    example: ExampleProject, redis_url: str, tmp_path: Path
) -> None:
    # A database of the broker's own, away from other tests' queues.
    env = {**example.env, "CELERY_BROKER_URL": redis_url.rsplit("/", 1)[0] + "/12"}
    example.manage("record_readings", "--count", "3", "--no-changes")
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "example_project",
            "worker",
            "--beat",
            "--pool",
            "solo",
            "--schedule",
            str(tmp_path / "beat-schedule"),
            "--loglevel",
            "INFO",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        waited = example.manage("weather_report", "--wait", "acked", "--timeout", "90", check=False)
    finally:
        worker.send_signal(signal.SIGTERM)
        log, _ = worker.communicate(timeout=60)
    assert waited.returncode == 0, waited.stderr + log
    assert "django_ensign.tasks.publish_outbox" in log
    assert "acked by the server: 3 (dead: 0)" in waited.stdout

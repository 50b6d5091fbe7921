"""The drain lock: a relay holds it shared for its life, Celery drains skip meanwhile."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings

from django_ensign import locks, notify
from tests.outbox.support import ROOT
from tests.support.server import free_port

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_starting_relay_waits_for_a_running_drain_then_holds_the_lock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    draining, drained, retrying = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, Any] = {}

    def celery_drain() -> None:
        with locks.drain_lock() as taken:  # exclusive, as the Celery task takes it
            seen["drain"] = taken
            draining.set()
            drained.wait(30)

    def tried_and_waits(seconds: float) -> None:
        retrying.set()  # the relay's first try found the lock taken
        time.sleep(seconds)

    # The locks module's own clock, so the signal above marks exactly a failed try.
    clock = SimpleNamespace(monotonic=time.monotonic, sleep=tried_and_waits)

    def relay_starts() -> None:
        with locks.relay_lock(wait=30) as taken:
            seen["relay"] = taken
            with locks.drain_lock() as later_drain:
                seen["later drain"] = later_drain

    monkeypatch.setattr(locks, "time", clock)
    drain = threading.Thread(target=celery_drain)
    drain.start()
    assert draining.wait(30)
    relay = threading.Thread(target=relay_starts)
    relay.start()
    assert retrying.wait(30)
    drained.set()
    drain.join(30)
    relay.join(30)
    assert seen == {"drain": True, "relay": True, "later drain": False}


def test_a_relay_goes_on_without_the_lock_once_its_wait_is_over() -> None:
    with locks.drain_lock() as draining, locks.relay_lock(wait=0) as taken:
        assert (draining, taken) == (True, False)


@pytest.mark.usefixtures("postgres_only")
def test_a_drain_that_cannot_reach_postgresql_skips_and_says_why(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    unreachable = {**notify.conninfo("default"), "host": "127.0.0.1", "port": free_port()}
    monkeypatch.setattr(notify, "conninfo", lambda using: unreachable)
    monkeypatch.setattr(locks, "_warned_at", {})
    with caplog.at_level("WARNING", logger="django_ensign.locks"):
        with locks.drain_lock() as taken:
            assert not taken
        with locks.relay_lock(wait=0.6) as taken:  # three more tries, no more warnings
            assert not taken
    warnings = [r for r in caplog.records if "could not connect to PostgreSQL" in r.message]
    assert len(warnings) == 1


def test_a_lock_file_that_cannot_be_opened_lets_drains_go_on_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    if connection.vendor == "postgresql":
        pytest.skip("PostgreSQL takes an advisory lock, not a file")
    monkeypatch.setattr(locks, "_warned_at", {})
    with override_settings(ENSIGN_OUTBOX_LOCK_FILE_DIR=str(tmp_path)):
        locks._lock_path("default").mkdir()  # as unopenable as another user's 0600 file
        with (
            caplog.at_level("WARNING", logger="django_ensign.locks"),
            locks.drain_lock() as drain,
            locks.relay_lock(wait=0.6) as relay,
        ):
            # The leases keep the rows apart: a drain that skipped at every beat, or
            # failed, would publish nothing while no relay runs.
            assert (drain, relay) == (True, True)
    warnings = [r for r in caplog.records if "cannot be used" in r.message]
    assert len(warnings) == 1


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    """A folder every user may enter (pytest's own temp dirs are root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="django-ensign-locks-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


def test_a_lock_file_another_user_made_still_locks(shared_folder: Path) -> None:
    # The relay as one user made it, mode 0644 under a 022 umask; a Celery worker runs
    # as another. Here root makes it and "nobody" locks it.
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv to act as a second user")
    lock = shared_folder / "drain.lock"
    lock.touch(0o644)
    script = (
        "import fcntl, pathlib; from django_ensign.locks import _open_lock_file; "
        f"fd = _open_lock_file(pathlib.Path({str(lock)!r})); "
        "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB); print('locked')"
    )
    result = subprocess.run(
        [setpriv, "--reuid", "65534", "--regid", "65534", "--clear-groups",
         sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert result.stdout.strip() == "locked", result.stderr

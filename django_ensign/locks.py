"""The drain lock: Celery drains skip while a relay of every topic (or another drain) runs.

Correctness never depends on it (the claim's leases do that); it only keeps beat
ticks and the relay command from piling up on the same rows. Running relays of every
topic hold it shared, so several of them coexist (a relay of some topics takes none);
a Celery drain needs it exclusively. PostgreSQL uses a session advisory lock on a
connection of its own; other databases use an ``flock`` on a file named after the
database. Either way a killed holder releases it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.db import connections

from django_ensign.conf import settings

logger = logging.getLogger(__name__)

# An arbitrary 64-bit advisory-lock key: "ensign" in ASCII.
ADVISORY_KEY = 0x656E7369676E
#: Seconds between a starting relay's tries of the shared lock.
RELAY_LOCK_RETRY = 0.25


@contextlib.contextmanager
def drain_lock(using: str = "default", *, shared: bool = False) -> Iterator[bool]:
    """Try to take the drain lock without waiting; yields whether it was taken."""
    connection = connections[using]
    if connection.vendor == "postgresql":
        with _advisory(using, shared) as taken:
            yield taken
    else:
        with _file_lock(using, shared) as taken:
            yield taken


@contextlib.contextmanager
def _advisory(using: str, shared: bool) -> Iterator[bool]:
    import psycopg

    from django_ensign.notify import conninfo

    function = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
    params: dict[str, Any] = conninfo(using)
    try:
        conn = psycopg.connect(autocommit=True, **params)
    except psycopg.OperationalError as err:
        # The caller's own retries deal with a database that is down; said here, as a
        # drain that skips for it would otherwise look like one that found a relay.
        _warn_now_and_then(
            using, "the outbox drain lock could not connect to PostgreSQL (%s): %s", using, err
        )
        yield False
        return
    with conn:
        row = conn.execute(f"SELECT {function}(%s)", [ADVISORY_KEY]).fetchone()
        yield bool(row and row[0])
    # Closing the session releases the lock.


#: Seconds between two warnings that the lock's database is unreachable: a starting relay
#: tries four times a second for up to 30 s.
_WARN_EVERY = 10.0
#: Seconds between two warnings that the lock's file cannot be used: that lasts until
#: someone fixes it, and each beat's drain would say it again.
_WARN_FILE_EVERY = 3600.0
#: When each alias's lock trouble was last warned of (monotonic seconds).
_warned_at: dict[str, float] = {}


def _warn_now_and_then(using: str, message: str, *args: object, every: float = _WARN_EVERY) -> None:
    now = time.monotonic()
    if now - _warned_at.get(using, -every) >= every:
        _warned_at[using] = now
        logger.warning(message, *args)


@contextlib.contextmanager
def relay_lock(using: str = "default", *, wait: float = 30.0) -> Iterator[bool]:
    """The drain lock held shared for a relay's life, retried for up to ``wait`` seconds.

    A Celery drain may hold it exclusively at the moment a relay starts; it ends soon
    (it drains what is due and returns), and a relay that went on without the lock
    would let every later drain run beside it. Past ``wait`` the relay runs anyway:
    the claims' leases keep that correct.
    """
    deadline = time.monotonic() + wait
    while True:
        with drain_lock(using, shared=True) as taken:
            if taken or time.monotonic() >= deadline:
                yield taken
                return
        time.sleep(RELAY_LOCK_RETRY)


def _lock_path(using: str) -> Path:
    name = str(connections[using].settings_dict.get("NAME") or using)
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    folder = settings.OUTBOX_LOCK_FILE_DIR or tempfile.gettempdir()
    return Path(folder) / f"django-ensign-drain-{digest}.lock"


@contextlib.contextmanager
def _file_lock(using: str, shared: bool) -> Iterator[bool]:
    path = _lock_path(using)
    try:
        fd = _open_lock_file(path)
    except OSError as err:
        # The lock saves work, the leases keep each row with one relay or drain: going on
        # without it beats a drain that fails, or skips, at every beat.
        _warn_now_and_then(
            using,
            "the outbox drain lock file %s cannot be used (%s); going on without it",
            path,
            err,
            every=_WARN_FILE_EVERY,
        )
        yield True
        return
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _open_lock_file(path: Path) -> int:
    """A descriptor ``flock`` can lock: the relay and the Celery worker may run as
    different users, and a file another user made may be readable only."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:
        return os.open(path, os.O_RDONLY)

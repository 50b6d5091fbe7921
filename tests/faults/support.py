"""Shared pieces of the fault tests: the suite's ledger, fault injectors and end-state checks.

The ledger counts what the suite did (iterations, faults injected, events checked) and
what it found (events lost, events applied twice); ``tests/faults/conftest.py`` prints
it as the run's summary line. Every check records its numbers before the test asserts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.db import connection
from django.db.models import Count

from django_ensign import outbox
from django_ensign.client import Ensign, SendDeadline
from django_ensign.models import OutboxEvent, OutboxStatus
from django_ensign.relay import Relay, RelayOptions
from tests.handlerapp.models import Applied
from tests.outbox.support import server_events, stable_ids
from tests.support.clients import sdk_client as sdk_client
from tests.support.server import EmbeddedServer

#: The handler app's topic whose handler records every application in ``Applied``.
APPLIED_TOPIC = "sub-bulk"
APPLIED_HANDLER = "bulk"


@dataclass
class Ledger:
    """What the fault suite did and found, summed over its tests."""

    seed: int = 0
    iterations: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    events_checked: int = 0
    lost: int = 0
    duplicates: int = 0
    tests: int = 0

    def fault(self, kind: str) -> None:
        """Count one injected fault of ``kind``."""
        self.faults[kind] += 1

    def summary(self) -> str:
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(self.faults.items()))
        return (
            f"fault suite (seed {self.seed}): {self.tests} scenarios, "
            f"iterations run {self.iterations}, "
            f"faults injected {sum(self.faults.values())} ({kinds or 'none'}), "
            f"events checked {self.events_checked}, events lost {self.lost}, "
            f"duplicates applied {self.duplicates}"
        )


#: The one ledger of this pytest process (the conftest hands it out and prints it).
LEDGER = Ledger()


# ---- end-state checks ----------------------------------------------------------------


@dataclass
class Verdict:
    """The end state of one scenario; ``assert_clean`` fails the test if anything is off."""

    checked: int
    unpublished: list[str]
    missing_on_server: list[str]
    never_applied: list[str]
    applied_twice: list[str]

    @property
    def lost(self) -> int:
        return len(set(self.unpublished) | set(self.missing_on_server) | set(self.never_applied))

    def assert_clean(self) -> None:
        assert not self.unpublished, f"committed rows never acked: {self.unpublished[:10]}"
        assert not self.missing_on_server, f"acked but not stored: {self.missing_on_server[:10]}"
        assert not self.never_applied, f"never handled: {self.never_applied[:10]}"
        assert not self.applied_twice, f"handled twice: {self.applied_twice[:10]}"


def check_outbox_pipeline(
    ledger: Ledger,
    server: EmbeddedServer,
    topic: str,
    rows: list[OutboxEvent],
    *,
    handled: bool,
) -> Verdict:
    """Every row acked, every acked row stored on ``server``, and (``handled``) applied once."""
    wanted = {row.event_id for row in rows}
    acked = set(
        OutboxEvent.objects.filter(event_id__in=wanted, status=OutboxStatus.ACKED).values_list(
            "event_id", flat=True
        )
    )
    stored = set(stable_ids(server_events(server, topic)))
    never_applied: list[str] = []
    applied_twice: list[str] = []
    if handled:
        counts = dict(
            Applied.objects.filter(handler=APPLIED_HANDLER, event_id__in=wanted)
            .values_list("event_id")
            .annotate(n=Count("id"))
            .values_list("event_id", "n")
        )
        never_applied = sorted(wanted - set(counts))
        applied_twice = sorted(k for k, n in counts.items() if n > 1)
    verdict = Verdict(
        checked=len(wanted),
        unpublished=sorted(wanted - acked),
        missing_on_server=sorted(acked - stored),
        never_applied=never_applied,
        applied_twice=applied_twice,
    )
    ledger.events_checked += verdict.checked
    ledger.lost += verdict.lost
    ledger.duplicates += len(verdict.applied_twice)
    return verdict


def acked_but_not_stored(server: EmbeddedServer, topic: str) -> list[str]:
    """Rows the database says are acked whose event the server does not have."""
    acked = set(
        OutboxEvent.objects.filter(topic=topic, status=OutboxStatus.ACKED).values_list(
            "event_id", flat=True
        )
    )
    return sorted(acked - set(stable_ids(server_events(server, topic))))


def write_rows(topic: str, count: int, start: int = 0, keys: int = 10) -> list[OutboxEvent]:
    """``count`` committed outbox rows for ``topic`` (autocommit: each its own transaction)."""
    return [
        outbox.publish(topic, {"n": n}, type_name="Counted", key=f"k{n % keys}")
        for n in range(start, start + count)
    ]


def acked_count(topic: str) -> int:
    return OutboxEvent.objects.filter(topic=topic, status=OutboxStatus.ACKED).count()


def applied_count() -> int:
    return Applied.objects.filter(handler=APPLIED_HANDLER).count()


def pipeline_state() -> str:
    """Counts of outbox statuses, applications, inbox rows and dead letters, for failures."""
    from django_ensign.models import DeadLetter, InboxEvent

    statuses = dict(
        OutboxEvent.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n")
    )
    dead = list(DeadLetter.objects.values_list("event_id", "reason", "error")[:5])
    return (
        f"outbox {statuses}, applied {applied_count()}, inbox {InboxEvent.objects.count()}, "
        f"dead letters {DeadLetter.objects.count()} {dead}"
    )


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until true; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


# ---- an in-process relay -------------------------------------------------------------


class ClientShim:
    """Stands between a relay and its SDK client, to change what reaches the server.

    A relay calls only ``publish_encoded`` and ``close``; subclasses override
    :meth:`before_send`, which returns the events to send (it may answer others itself).
    """

    def __init__(self, client: Ensign) -> None:
        self.client = client

    async def publish_encoded(
        self,
        topic: str,
        events: Sequence[tuple[bytes, bytes]],
        on_ack: Callable[[Any], None] | None = None,
        on_nack: Callable[[Any], None] | None = None,
        ensure_exists: bool = False,
        send_by: SendDeadline | None = None,
    ) -> None:
        sent = await self.before_send(list(events), on_nack) if events else []
        await self.client.publish_encoded(topic, sent, on_ack, on_nack, ensure_exists, send_by)

    async def before_send(
        self, events: list[tuple[bytes, bytes]], on_nack: Callable[[Any], None] | None
    ) -> list[tuple[bytes, bytes]]:
        return events

    async def close(self) -> None:
        await self.client.close()


class RelayThread:
    """A relay on its own event loop in a thread of the test process (knobs the CLI lacks)."""

    def __init__(self, options: RelayOptions, make_client: Callable[[], Ensign]) -> None:
        self._options = options
        self._make_client = make_client
        self._relay: Relay | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="fault-relay", daemon=True)

    def start(self) -> RelayThread:
        self._thread.start()
        self._started.wait(10)
        return self

    def _main(self) -> None:
        async def run() -> None:
            client = self._make_client()
            self._relay = Relay(self._options, client=client)
            self._loop = asyncio.get_running_loop()
            self._started.set()
            try:
                await self._relay.run()
            finally:
                await client.close()

        try:
            asyncio.run(run())
        except BaseException as err:
            self.error = err
        finally:
            self._started.set()

    @property
    def given_back(self) -> int:
        """Rows the relay gave back uncounted, as Ensign could not be reached (so far)."""
        return self._relay.stats.released if self._relay is not None else 0

    @classmethod
    def until_acked(
        cls,
        count: int,
        options: RelayOptions,
        make_client: Callable[[], Any],
        topic: str,
        rows: int,
        timeout: float,
    ) -> None:
        """Run ``count`` relays until ``rows`` rows of ``topic`` are acked, then stop them."""
        relays = [cls(options, make_client).start() for _ in range(count)]
        try:
            wait_for(lambda: acked_count(topic) == rows, timeout, f"{rows} rows acked")
        finally:
            for relay in relays:
                relay.stop()

    def stop(self, timeout: float = 60.0) -> None:
        """Stop claiming, let in-flight events finish, and join the thread."""
        if self._loop is not None and self._relay is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._relay.stop)
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the relay did not stop"
        if self.error is not None:
            raise AssertionError(f"the relay failed: {self.error!r}") from self.error


def quick_relay_options(**overrides: Any) -> RelayOptions:
    """Relay options with short leases and backoff, so faults heal within a test."""
    values: dict[str, Any] = {
        "batch_size": 16,
        "max_in_flight": 200,
        "lease_seconds": 2.0,
        "poll_seconds": 0.2,
        "backoff_base": 0.05,
        "backoff_max": 0.5,
        "max_attempts": 10_000,
        "listen": False,
    }
    values.update(overrides)
    return RelayOptions(**values)


# ---- PostgreSQL restart --------------------------------------------------------------


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def postgres_cluster() -> tuple[str, str] | None:
    """(version, name) of the pg_ctlcluster-managed PostgreSQL cluster on port 5432."""
    if shutil.which("pg_lsclusters") is None or shutil.which("pg_ctlcluster") is None:
        return None
    out = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True)
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "5432":
            return parts[0], parts[1]
    return None


def restart_postgres(cluster: tuple[str, str], mode: str = "fast") -> None:
    """Restart the cluster and wait until it answers.

    ``fast`` cuts every session and shuts down cleanly; ``immediate`` is a crash: no
    checkpoint, and commits whose WAL was not yet flushed are gone after recovery.
    """
    version, name = cluster
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, "restart", "-m", mode],
        check=True,
        capture_output=True,
        timeout=60,
    )
    ensure_postgres_up(cluster)


def ensure_postgres_up(cluster: tuple[str, str], timeout: float = 60.0) -> None:
    """Start the cluster if it is down; wait for it to take connections again."""
    version, name = cluster
    if not _port_open(5432):
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, "start"],
            capture_output=True,
            timeout=60,
        )
    deadline = time.monotonic() + timeout
    while True:
        connection.close()
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# ---- a read-only disk ------------------------------------------------------------------


class Ext4Volume:
    """A small ext4 filesystem on a loop device, mounted with ``errors=remount-ro``.

    ``fail()`` raises an ext4 error through sysfs, so the kernel remounts it read-only under
    the running server: every later write fails with EROFS, as on a failing disk.
    (A plain ``mount -o remount,ro`` is refused while SQLite holds files open for writing.)
    """

    def __init__(self, root: Path, size_mb: int = 64) -> None:
        self.image = root / "disk.img"
        self.mountpoint = root / "mnt"
        self.size_mb = size_mb
        self.mounted = False

    @staticmethod
    def unavailable() -> str | None:
        """Why this machine cannot run the test, or None."""
        import os

        if os.geteuid() != 0:
            return "mounting a loop filesystem needs root"
        for tool in ("mkfs.ext4", "mount", "umount", "e2fsck"):
            if shutil.which(tool) is None:
                return f"{tool} is not installed"
        if not Path("/dev/loop-control").exists():
            return "no loop devices (/dev/loop-control)"
        return None

    def create(self) -> Ext4Volume:
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        with self.image.open("wb") as handle:
            handle.truncate(self.size_mb * 1024 * 1024)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(self.image)], check=True, capture_output=True)
        self.mount()
        return self

    def mount(self) -> None:
        result = subprocess.run(
            ["mount", "-o", "loop,errors=remount-ro", str(self.image), str(self.mountpoint)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise PermissionError(f"cannot mount a loop filesystem: {result.stderr.strip()}")
        self.mounted = True

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", str(self.mountpoint)], check=True, capture_output=True)
            self.mounted = False

    def device(self) -> str:
        out = subprocess.run(
            ["findmnt", "-n", "-o", "SOURCE", str(self.mountpoint)],
            capture_output=True,
            text=True,
            check=True,
        )
        return Path(out.stdout.strip()).name

    def fail(self) -> None:
        """Make the filesystem read-only under its users, as the kernel does on disk errors."""
        Path(f"/sys/fs/ext4/{self.device()}/trigger_fs_error").write_text("fault test\n")

    def is_read_only(self) -> bool:
        probe = self.mountpoint / f"probe-{uuid.uuid4().hex}"
        try:
            probe.write_text("x")
        except OSError:
            return True
        probe.unlink()
        return False

    def repair(self) -> None:
        """Unmount, fsck, mount read-write again (what an operator does after the failure)."""
        self.unmount()
        subprocess.run(["e2fsck", "-fy", str(self.image)], capture_output=True)
        self.mount()

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.unmount()
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.mountpoint)], capture_output=True)
        self.image.unlink(missing_ok=True)


# ---- a token issuer with a skewed clock ----------------------------------------------


class SkewedIssuer:
    """An HTTP auth service that signs tokens with the server's own key, on a skewed clock.

    It answers ``/v1/authenticate`` like the server's auth service for any credentials,
    with the claims of a real token of the server's bootstrap key, but with ``iat``,
    ``nbf`` and ``exp`` computed from ``time.time() + skew``.
    """

    def __init__(self, server: EmbeddedServer, real_access_token: str) -> None:
        pem = (server.data_dir / "signing-key.pem").read_bytes()
        key = serialization.load_pem_private_key(pem, password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        self._key = key
        header = jwt.get_unverified_header(real_access_token)
        self._kid = str(header["kid"])
        self._claims = jwt.decode(real_access_token, options={"verify_signature": False})
        self.skew = 0.0
        self.issued = 0
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    def token(self, skew: float | None = None, lifetime: int = 3600) -> str:
        """An access token as an issuer whose clock is off by ``skew`` seconds signs it."""
        now = int(time.time() + (self.skew if skew is None else skew))
        claims = {
            **self._claims,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(
            claims,
            self._key,
            algorithm="RS256",
            headers={"kid": self._kid},
        )

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                issuer.issued += 1
                body = json.dumps(
                    {"access_token": issuer.token(), "refresh_token": "", "last_login": ""}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def __enter__(self) -> SkewedIssuer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()

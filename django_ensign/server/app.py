"""Starting and stopping the embedded server: storage, gRPC, the auth service, signals."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from django_ensign import __version__
from django_ensign.server import accounts
from django_ensign.server.authhttp import AuthService
from django_ensign.server.broker import Broker
from django_ensign.server.groups import GroupManager
from django_ensign.server.service import SERVICE, EnsignService
from django_ensign.server.state import MAX_MESSAGE_BYTES, ServerState
from django_ensign.server.storage import Storage
from django_ensign.server.tokens import ALL_PERMISSIONS, TokenIssuer
from django_ensign.server.topics import DELETING, TopicRegistry
from django_ensign.wire import ids

log = logging.getLogger(__name__)

DB_NAME = "ensign.db"
CREDENTIALS = "credentials.json"
SHUTDOWN_GRACE = 10.0


def write_json_atomically(path: Path, data: dict[str, str]) -> None:
    """Write ``data`` to ``path`` via a fsynced temporary file and a rename (mode 0600)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def open_storage(data_dir: Path) -> Storage:
    """The data directory's database (created if needed)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return Storage(data_dir / DB_NAME)


def create_key(data_dir: Path, permissions: list[str]) -> dict[str, str]:
    """Create an API key in the default project; returns the credentials JSON."""
    storage = open_storage(data_dir)
    try:

        def make(conn: sqlite3.Connection) -> tuple[str, str]:
            project = accounts.default_project(conn)
            return accounts.create_apikey(conn, project, permissions)

        client_id, secret = storage.execute_sync(make)
    finally:
        storage.close()
    return {"ClientID": client_id, "ClientSecret": secret}


def _server_id(conn: sqlite3.Connection) -> str:
    row = conn.execute("SELECT value FROM meta WHERE key = 'server_id'").fetchone()
    if row:
        return str(row[0])
    server_id = ids.ulid_to_str(ids.new_ulid())
    conn.execute("INSERT INTO meta (key, value) VALUES ('server_id', ?)", (server_id,))
    return server_id


async def serve(
    data_dir: Path,
    host: str,
    port: int,
    auth_port: int,
    stop: asyncio.Event,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Run until ``stop`` is set, then shut down cleanly; ``on_ready`` hears where it listens.

    A port already taken raises OSError naming it.
    """
    os.makedirs(data_dir, exist_ok=True)
    issuer = TokenIssuer.load_or_create(data_dir)
    storage = open_storage(data_dir)
    server_id = storage.execute_sync(_server_id)
    credentials: dict[str, str] | None = None
    creds_path = data_dir / CREDENTIALS

    def has_keys(conn: sqlite3.Connection) -> bool:
        return conn.execute("SELECT 1 FROM apikeys LIMIT 1").fetchone() is not None

    # A missing file, or a file left over from a removed database, gets a fresh key.
    if not creds_path.exists() or not storage.execute_sync(has_keys):

        def bootstrap(conn: sqlite3.Connection) -> tuple[str, str]:
            project = accounts.default_project(conn)
            return accounts.create_apikey(conn, project, list(ALL_PERMISSIONS))

        client_id, secret = storage.execute_sync(bootstrap)
        credentials = {"ClientID": client_id, "ClientSecret": secret}
    registry = TopicRegistry(storage.load_topics())
    broker = Broker(registry)
    storage.listeners.append(broker.on_commit)
    loop = asyncio.get_running_loop()
    storage.start(loop)
    state = ServerState(storage, registry, issuer, broker, server_id, __version__)
    groups = GroupManager(storage)
    service = EnsignService(state, groups)

    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ]
    )
    server.add_generic_rpc_handlers((service.handler(),))
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    try:
        _listen(server, host, port)
    except OSError:
        storage.close()
        raise
    auth = AuthService(storage, issuer, __version__)
    try:
        await server.start()
        try:
            await auth.start(host, auth_port)
        except OSError as err:
            raise OSError(f"could not listen on {host}:{auth_port} for auth ({err})") from err
        serving = health_pb2.HealthCheckResponse.SERVING
        await health_servicer.set("", serving)
        await health_servicer.set(SERVICE, serving)
        for topic in list(registry.by_id.values()):
            if topic.state == DELETING:
                service.rpcs.schedule_destroy(topic)
        if credentials is not None:
            write_json_atomically(creds_path, credentials)
        ready = (
            f"ensign server {server_id} on {host}:{port} (auth :{auth_port}), data in {data_dir}"
        )
        log.info("%s", ready)
        if on_ready is not None:
            on_ready(ready)
        await stop.wait()
        log.info("shutting down")
    finally:
        await health_servicer.enter_graceful_shutdown()
        await auth.stop()
        stopping = asyncio.ensure_future(server.stop(SHUTDOWN_GRACE))
        await asyncio.sleep(0)
        await asyncio.gather(*(s.shutdown() for s in list(state.streams)))
        await stopping
        with contextlib.suppress(Exception):
            await groups.close()
        storage.close()


def _listen(server: grpc.aio.Server, host: str, port: int) -> None:
    """Bind the gRPC port; OSError naming it when that fails (the port is taken, say)."""
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as err:  # grpcio's "Failed to bind"
        raise OSError(f"could not listen on {host}:{port} for gRPC ({err})") from err
    if not bound:
        raise OSError(f"could not listen on {host}:{port} for gRPC")


def run(
    data_dir: str,
    host: str = "127.0.0.1",
    port: int = 5356,
    auth_port: int = 8088,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Run the server in the foreground until SIGINT/SIGTERM (blocking); see :func:`serve`."""

    async def main() -> None:
        stop = asyncio.Event()
        if threading.current_thread() is threading.main_thread():
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
        await serve(Path(data_dir), host, port, auth_port, stop, on_ready)

    asyncio.run(main())

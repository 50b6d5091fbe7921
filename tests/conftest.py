"""Fixtures shared by the whole suite: the real embedded server and the real services."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import Credentials, EmbeddedServer, port_open


@pytest.fixture(scope="session")
def ensign_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """The suite's shared embedded server.

    `make test` starts one and exports ENSIGN_TEST_SERVER; otherwise the fixture
    starts its own. Tests that kill or restart a server use ``fresh_server``.
    """
    shared = os.environ.get("ENSIGN_TEST_SERVER")
    if shared:
        creds = Path(os.environ["ENSIGN_TEST_CREDENTIALS"])
        port = shared.rsplit(":", 1)[1]
        auth_port = int(os.environ["ENSIGN_TEST_AUTH_URL"].rsplit(":", 1)[1])
        yield EmbeddedServer(data_dir=creds.parent, port=int(port), auth_port=auth_port)
        return
    server = EmbeddedServer(data_dir=tmp_path_factory.mktemp("ensign-server")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A server of this test's own, in its own data dir; killed if still running at the end."""
    server = EmbeddedServer(data_dir=tmp_path / "ensign-server").start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="session")
def ensign_credentials(ensign_server: EmbeddedServer) -> Credentials:
    return ensign_server.credentials


def _require_port(port: int, name: str) -> None:
    if not port_open(port):
        pytest.skip(f"{name} is not running on 127.0.0.1:{port}")


@pytest.fixture(scope="session")
def redis_url() -> str:
    _require_port(6379, "Redis")
    return "redis://127.0.0.1:6379/15"


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    _require_port(5672, "RabbitMQ")
    return "amqp://guest:guest@127.0.0.1:5672//"

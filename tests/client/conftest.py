"""Fixtures of the SDK tests: clients of the shared embedded server, fresh topic names."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from django_ensign.client import Ensign
from django_ensign.client.events import encode_event, new_local_id
from tests.support.server import EmbeddedServer


def make_client(server: EmbeddedServer, **options: object) -> Ensign:
    """A client of ``server`` configured by arguments (not the environment)."""
    creds = server.credentials
    return Ensign(
        client_id=creds.client_id,
        client_secret=creds.client_secret,
        endpoint=server.endpoint,
        auth_url=server.auth_url,
        **options,  # type: ignore[arg-type]
    )


def encoded(n: int) -> tuple[bytes, bytes]:
    """A ``(local id, encoded event)`` pair whose data and ``n`` metadata are ``n``."""
    return new_local_id(), encode_event(b"%d" % n, "text/plain", "Count", "1.0.0", {"n": str(n)})


@pytest.fixture
def topic_name() -> Callable[[], str]:
    """Makes topic names no other test uses."""
    return lambda: f"t{uuid.uuid4().hex[:20]}"


@pytest.fixture(params=[True, False], ids=["batch", "plain"])
def batch(request: pytest.FixtureRequest) -> bool:
    """Run a test with the batch extension and with plain Ensign framing."""
    return bool(request.param)


@pytest.fixture
async def client(ensign_server: EmbeddedServer) -> AsyncIterator[Ensign]:
    """A client of the shared server, closed after the test."""
    ensign = make_client(ensign_server)
    try:
        yield ensign
    finally:
        await ensign.close()

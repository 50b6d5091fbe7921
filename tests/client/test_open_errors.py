"""A stream the server refuses at once reports the server's reason, not a core write error."""

from __future__ import annotations

import pytest

from django_ensign.client import Ensign, Event, exceptions
from django_ensign.server.app import create_key
from tests.support.server import EmbeddedServer

ATTEMPTS = 20


def _client_with(server: EmbeddedServer, permissions: list[str]) -> Ensign:
    creds = create_key(server.data_dir, permissions)
    return Ensign(
        client_id=creds["ClientID"],
        client_secret=creds["ClientSecret"],
        endpoint=server.endpoint,
        auth_url=server.auth_url,
    )


async def _publish_and_wait(client: Ensign) -> None:
    event = Event(b"x", "text/plain")
    await client.publish("denied-publish", event)
    await event.wait_for_ack(timeout=10)


async def test_subscribe_without_permission_is_denied_every_time(
    ensign_server: EmbeddedServer,
) -> None:
    client = _client_with(ensign_server, ["publisher", "topics:read"])
    try:
        for _ in range(ATTEMPTS):
            subscription = client.subscribe("denied-topic", reconnect=False)
            with pytest.raises(exceptions.PermissionDenied):
                await subscription.open()
            await subscription.close()
    finally:
        await client.close()


async def test_publish_without_permission_is_nacked_or_denied_every_time(
    ensign_server: EmbeddedServer,
) -> None:
    client = _client_with(ensign_server, ["subscriber", "topics:read", "topics:create"])
    try:
        await client.ensure_topic_exists("denied-publish")
        for _ in range(ATTEMPTS):
            with pytest.raises(exceptions.PermissionDenied):
                await _publish_and_wait(client)
    finally:
        await client.close()

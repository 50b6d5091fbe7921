"""Authentication against the embedded server's auth service."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from django_ensign.client import Ensign, Event, exceptions
from django_ensign.client.auth import RENEW_AHEAD, TokenSource, jwt_claims
from tests.support.server import EmbeddedServer, free_port


async def test_environment_credentials_reach_the_server(
    ensign_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in ensign_server.client_env().items():
        monkeypatch.setenv(key, value)
    async with Ensign() as client:
        assert client.config.insecure
        assert isinstance(await client.get_topics(), list)


async def test_wrong_secret_is_an_authentication_error(ensign_server: EmbeddedServer) -> None:
    client = Ensign(
        client_id=ensign_server.credentials.client_id,
        client_secret="x" * 64,
        endpoint=ensign_server.endpoint,
        auth_url=ensign_server.auth_url,
    )
    with pytest.raises(exceptions.AuthenticationError, match="invalid credentials"):
        await client.get_topics()
    await client.close()


async def test_unreachable_auth_service_names_its_url(ensign_server: EmbeddedServer) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    client = Ensign(
        client_id="a" * 32, client_secret="b" * 64, endpoint=ensign_server.endpoint, auth_url=dead
    )
    with pytest.raises(exceptions.AuthServiceUnreachable, match=dead):
        await client.get_topics()
    await client.close()


async def test_tokens_are_renewed_in_the_background(ensign_server: EmbeddedServer) -> None:
    creds = ensign_server.credentials
    source = TokenSource(ensign_server.auth_url, creds.client_id, creds.client_secret)
    first = await source.access_token()
    assert jwt_claims(first)["exp"] > time.time()
    # Pretend the token is about to expire: the call still answers at once with it,
    # and a renewal runs off the loop.
    tokens = source._tokens
    assert tokens is not None
    source._tokens = type(tokens)(tokens.access, time.time() + RENEW_AHEAD / 2, "", 0.0, 0.0)
    assert await source.access_token() == first
    await asyncio.gather(*source._tasks)
    assert source._tokens is not None
    assert source._tokens.access_exp > time.time() + RENEW_AHEAD


async def test_publish_with_refused_credentials_fails_each_event(
    ensign_server: EmbeddedServer, client: Ensign, topic_name: Callable[[], str]
) -> None:
    topic_id = await client.create_topic(topic_name())
    refused = Ensign(
        client_id=ensign_server.credentials.client_id,
        client_secret="x" * 64,
        endpoint=ensign_server.endpoint,
        auth_url=ensign_server.auth_url,
    )
    event = Event(b"never stored", "text/plain")
    await refused.publish(topic_id, event)
    with pytest.raises(exceptions.AuthenticationError):
        await event.wait_for_ack(timeout=10)
    await refused.close()


async def test_expired_access_token_is_replaced_before_the_call(
    ensign_server: EmbeddedServer,
) -> None:
    creds = ensign_server.credentials
    source = TokenSource(ensign_server.auth_url, creds.client_id, creds.client_secret)
    first = await source.access_token()
    tokens = source._tokens
    assert tokens is not None
    assert tokens.refresh  # the embedded auth service hands out refresh tokens
    # Expired access token; the refresh token is tried first (the server refuses it
    # before its nbf) and a fresh login follows.
    source._tokens = type(tokens)(first, time.time() - 1, tokens.refresh, 0.0, time.time() + 3600)
    renewed = await source.access_token()
    assert renewed != first
    assert jwt_claims(renewed)["exp"] > time.time()


async def test_a_subscription_whose_auth_service_never_answered_fails_at_once(
    ensign_server: EmbeddedServer,
) -> None:
    # Reconnecting waits out an auth outage only once the service has answered this client.
    dead = f"http://127.0.0.1:{free_port()}"
    client = Ensign(
        client_id="a" * 32, client_secret="b" * 64, endpoint=ensign_server.endpoint, auth_url=dead
    )
    subscription = client.subscribe("never-authenticated")
    with pytest.raises(exceptions.AuthServiceUnreachable, match=dead):
        await subscription.open()
    await subscription.close()
    await client.close()

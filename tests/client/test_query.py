"""EnSQL queries as an async iterator and as the official SDK's cursor."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from django_ensign.client import Ensign, Event, exceptions
from tests.client.conftest import make_client
from tests.support.server import EmbeddedServer


@pytest.fixture
async def stored_topic(client: Ensign, topic_name: Callable[[], str]) -> str:
    topic = topic_name()
    await client.publish(
        topic,
        [
            Event(b"%d" % i, "text/plain", meta={"parity": "odd" if i % 2 else "even"})
            for i in range(6)
        ],
        ensure_exists=True,
    )
    await client.flush(timeout=10)
    return topic


async def test_async_for_over_a_query(client: Ensign, stored_topic: str) -> None:
    data = [e.data async for e in client.query(f"SELECT * FROM {stored_topic}")]
    assert data == [b"%d" % i for i in range(6)]


async def test_results_name_their_topic_on_a_client_that_never_used_it(
    ensign_server: EmbeddedServer, stored_topic: str
) -> None:
    async with make_client(ensign_server) as fresh:
        topics = {e.topic async for e in fresh.query(f"SELECT * FROM {stored_topic}")}
    assert topics == {stored_topic}


async def test_cursor_fetch_methods(client: Ensign, stored_topic: str) -> None:
    cursor = await client.query(f"SELECT * FROM {stored_topic} WHERE parity = 'odd'")
    first = await cursor.fetchone()
    assert first is not None
    assert first.data == b"1"
    assert first.topic == stored_topic
    assert [e.data for e in await cursor.fetchmany(1)] == [b"3"]
    assert [e.data for e in await cursor.fetchall()] == [b"5"]
    assert await cursor.fetchone() is None


async def test_limit_and_offset(client: Ensign, stored_topic: str) -> None:
    cursor = await client.query(f"SELECT * FROM {stored_topic} OFFSET 1 LIMIT 2")
    assert [e.data for e in await cursor.fetchall()] == [b"1", b"2"]


async def test_empty_result_is_an_empty_iteration(client: Ensign, stored_topic: str) -> None:
    cursor = await client.query(f"SELECT * FROM {stored_topic} WHERE parity = 'none'")
    assert await cursor.fetchall() == []


@pytest.mark.parametrize("query", ["SELEKT nothing", "SELECT * FROM no_such_topic_xyz"])
async def test_bad_queries_raise_invalid_query(
    client: Ensign, stored_topic: str, query: str
) -> None:
    with pytest.raises(exceptions.InvalidQuery):
        await client.query(query)


def test_empty_query_fails_before_the_network(client: Ensign) -> None:
    with pytest.raises(exceptions.InvalidQuery):
        client.query("  ")


async def test_cursor_as_context_manager_stops_the_query(client: Ensign, stored_topic: str) -> None:
    async with client.query(f"SELECT * FROM {stored_topic}") as cursor:
        first = await cursor.fetchone()
    assert first is not None
    assert await cursor.fetchone() is None

"""Topic management against the real embedded server."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from django_ensign.client import DeduplicationStrategy, Ensign, TopicState, exceptions


async def test_create_list_exists_and_id_by_name(
    client: Ensign, topic_name: Callable[[], str]
) -> None:
    name = topic_name()
    assert not await client.topic_exists(name)
    topic_id = await client.create_topic(name)
    assert len(topic_id) == 26
    assert await client.topic_exists(name)
    assert await client.topic_id(name) == topic_id
    listed = {t.name: t for t in await client.get_topics()}
    assert listed[name].id == topic_id
    assert listed[name].status == TopicState.READY
    retrieved = await client.retrieve_topic(name)
    assert (retrieved.id, retrieved.name) == (topic_id, name)


async def test_ensure_topic_exists_is_idempotent(
    client: Ensign, topic_name: Callable[[], str]
) -> None:
    name = topic_name()
    first = await client.ensure_topic_exists(name)
    assert await client.ensure_topic_exists(name) == first


async def test_duplicate_and_invalid_names(client: Ensign, topic_name: Callable[[], str]) -> None:
    name = topic_name()
    await client.create_topic(name)
    with pytest.raises(exceptions.AlreadyExists):
        await client.create_topic(name)
    with pytest.raises(exceptions.InvalidArgument, match="invalid"):
        await client.create_topic("9 not valid")
    with pytest.raises(exceptions.InvalidTopicName):
        await client.create_topic("")


async def test_unknown_topic_id_lookup(client: Ensign, topic_name: Callable[[], str]) -> None:
    with pytest.raises(exceptions.TopicNotFound):
        await client.topic_id(topic_name())


async def test_archive_makes_a_topic_read_only(
    client: Ensign, topic_name: Callable[[], str]
) -> None:
    name = topic_name()
    await client.create_topic(name)
    assert await client.archive_topic(name) == TopicState.READONLY
    assert (await client.retrieve_topic(name)).status == TopicState.READONLY


async def test_destroy_deletes_the_topic(client: Ensign, topic_name: Callable[[], str]) -> None:
    name = topic_name()
    old_id = await client.create_topic(name)
    assert await client.destroy_topic(name) == TopicState.DELETING
    assert client.topics.id(name) is None
    try:
        state = (await client.retrieve_topic(old_id)).status
    except exceptions.TopicNotFound:
        state = None  # already gone: removal runs in the background
    assert state in (None, TopicState.DELETING)


async def test_deduplication_policy(client: Ensign, topic_name: Callable[[], str]) -> None:
    name = topic_name()
    await client.create_topic(name)
    state = await client.set_topic_deduplication_policy(name, "strict", "earliest")
    assert state in (TopicState.READY, TopicState.PENDING, TopicState.REPAIRING)
    assert (await client.retrieve_topic(name)).deduplication == DeduplicationStrategy.STRICT
    with pytest.raises(exceptions.ConfigurationError):
        await client.set_topic_deduplication_policy(name, "sometimes")

"""Topic management: create, ensure, exists, list, id by name, archive, destroy, policies."""

from __future__ import annotations

import enum
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from django_ensign.client import exceptions
from django_ensign.client.connection import Connection
from django_ensign.client.events import timestamp_to_datetime
from django_ensign.proto.api.v1beta1 import ensign_pb2, topic_pb2
from django_ensign.wire import ids

_E = TypeVar("_E", bound=enum.IntEnum)


class TopicState(enum.IntEnum):
    """A topic's state (``ensign.v1beta1.TopicState``)."""

    UNDEFINED = 0
    READY = 1
    READONLY = 2
    DELETING = 3
    PENDING = 4
    ALLOCATING = 5
    REPAIRING = 6


class DeduplicationStrategy(enum.IntEnum):
    """How a topic recognises duplicate events (``Deduplication.Strategy``)."""

    UNKNOWN = 0
    NONE = 1
    STRICT = 2
    DATAGRAM = 3
    KEY_GROUPED = 4
    UNIQUE_KEY = 5
    UNIQUE_FIELD = 6

    @classmethod
    def parse(cls, value: str | int) -> DeduplicationStrategy:
        """From a name (any case) or a number."""
        return _parse_enum(cls, value)


class OffsetPosition(enum.IntEnum):
    """Which of two duplicates a topic keeps (``Deduplication.OffsetPosition``)."""

    OFFSET_UNKNOWN = 0
    OFFSET_EARLIEST = 1
    OFFSET_LATEST = 2

    @classmethod
    def parse(cls, value: str | int) -> OffsetPosition:
        """From a name (``"earliest"`` or ``"OFFSET_EARLIEST"``) or a number."""
        if isinstance(value, str) and not value.upper().startswith("OFFSET_"):
            value = "OFFSET_" + value
        return _parse_enum(cls, value)


def _parse_enum(cls: type[_E], value: str | int) -> _E:
    try:
        if isinstance(value, str):
            return cls[value.strip().upper()]
        return cls(value)
    except (KeyError, ValueError):
        raise exceptions.ConfigurationError(f"unknown {cls.__name__} {value!r}") from None


@dataclass(frozen=True)
class Topic:
    """A topic of the project."""

    id: str
    name: str
    project_id: str
    readonly: bool
    offset: int
    status: TopicState
    deduplication: DeduplicationStrategy
    created: datetime | None
    modified: datetime | None

    @property
    def id_bytes(self) -> bytes:
        """The 16-byte id as on the wire."""
        return ids.ulid_from_str(self.id)

    @classmethod
    def from_proto(cls, msg: topic_pb2.Topic) -> Topic:
        """Build from an ``ensign.v1beta1.Topic``."""
        return cls(
            id=_ulid_text(msg.id),
            name=msg.name,
            project_id=_ulid_text(msg.project_id),
            readonly=msg.readonly,
            offset=msg.offset,
            status=TopicState(msg.status),
            deduplication=DeduplicationStrategy(msg.deduplication.strategy),
            created=timestamp_to_datetime(msg.created) if msg.HasField("created") else None,
            modified=timestamp_to_datetime(msg.modified) if msg.HasField("modified") else None,
        )


def _ulid_text(raw: bytes) -> str:
    return ids.ulid_to_str(raw) if len(raw) == ids.ULID_BYTES else raw.hex()


def topic_id_bytes(topic: str) -> bytes | None:
    """The 16-byte id if ``topic`` is a ULID string (names never parse: they start with a letter
    and a ULID's first character is a digit)."""
    if len(topic) == ids.ULID_TEXT and topic[0].isdigit():
        try:
            return ids.ulid_from_str(topic)
        except ValueError:
            return None
    return None


class TopicCache:
    """Known topic names and ids, shared by every loop of a client."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: dict[str, bytes] = {}
        self._names: dict[bytes, str] = {}

    def update(self, topics: Mapping[str, bytes]) -> None:
        """Remember name → id pairs (e.g. a StreamReady topic map)."""
        with self._lock:
            for name, topic_id in topics.items():
                self._ids[name] = topic_id
                self._names[topic_id] = name

    def forget(self, topic_id: bytes) -> None:
        """Drop a destroyed topic."""
        with self._lock:
            name = self._names.pop(topic_id, None)
            if name is not None and self._ids.get(name) == topic_id:
                del self._ids[name]

    def id(self, name: str) -> bytes | None:
        """The id of a known name."""
        return self._ids.get(name)

    def name(self, topic_id: bytes) -> str | None:
        """The name of a known id."""
        return self._names.get(topic_id)


class TopicAdmin:
    """The topic RPCs of one client."""

    def __init__(self, connection: Connection, cache: TopicCache) -> None:
        self._connection = connection
        self.cache = cache

    async def create_topic(self, name: str) -> str:
        """Create a topic; returns its id (ULID string). AlreadyExists if the name is taken."""
        _check_name(name)
        created = await self._connection.unary("CreateTopic", topic_pb2.Topic(name=name))
        self.cache.update({created.name: created.id})
        return _ulid_text(created.id)

    async def get_topics(self) -> list[Topic]:
        """Every topic of the project."""
        topics: list[Topic] = []
        token = ""
        while True:
            page = await self._connection.unary(
                "ListTopics", ensign_pb2.PageInfo(page_size=100, next_page_token=token)
            )
            for msg in page.topics:
                self.cache.update({msg.name: msg.id})
                topics.append(Topic.from_proto(msg))
            token = page.next_page_token
            if not token:
                return topics

    async def retrieve_topic(self, topic: str) -> Topic:
        """A topic by name or id; TopicNotFound if there is none."""
        topic_id = await self.resolve(topic)
        msg = await self._connection.unary(
            "RetrieveTopic", topic_pb2.Topic(id=topic_id), context="topic"
        )
        return Topic.from_proto(msg)

    async def topic_exists(self, name: str) -> bool:
        """Whether a topic of this name exists in the project."""
        _check_name(name)
        info = await self._connection.unary("TopicExists", topic_pb2.TopicName(name=name))
        return bool(info.exists)

    async def topic_id(self, name: str) -> str:
        """The id (ULID string) of a topic name; TopicNotFound if there is none."""
        return _ulid_text(await self.resolve(name))

    async def lookup(self, name: str) -> bytes | None:
        """The id of a topic name from the server (ignores the cache), or None."""
        for topic in await self.get_topics():
            if topic.name == name:
                return topic.id_bytes
        return None

    async def resolve(self, topic: str) -> bytes:
        """The 16-byte id of a topic name or id string; TopicNotFound if unknown."""
        if not isinstance(topic, str) or not topic:
            raise exceptions.InvalidTopicName()
        raw = topic_id_bytes(topic)
        if raw is not None:
            return raw
        cached = self.cache.id(topic)
        if cached is not None:
            return cached
        found = await self.lookup(topic)
        if found is None:
            raise exceptions.TopicNotFound(f"topic not found: {topic}")
        return found

    async def ensure_topic_exists(self, name: str) -> str:
        """The id of a topic, created if it does not exist yet."""
        _check_name(name)
        cached = self.cache.id(name)
        if cached is not None:
            return _ulid_text(cached)
        found = await self.lookup(name)
        if found is not None:
            return _ulid_text(found)
        try:
            return await self.create_topic(name)
        except exceptions.AlreadyExists:
            # Another client created it between our lookup and our create.
            return await self.topic_id(name)

    async def archive_topic(self, topic: str) -> TopicState:
        """Make a topic read-only; returns its new state (READONLY)."""
        return await self._delete(topic, topic_pb2.TopicMod.ARCHIVE)

    async def destroy_topic(self, topic: str) -> TopicState:
        """Delete a topic and its events (in the background); returns DELETING."""
        topic_id = await self.resolve(topic)
        state = await self._delete(topic, topic_pb2.TopicMod.DESTROY)
        self.cache.forget(topic_id)
        return state

    async def _delete(self, topic: str, operation: int) -> TopicState:
        topic_id = await self.resolve(topic)
        status = await self._connection.unary(
            "DeleteTopic",
            topic_pb2.TopicMod(id=ids.ulid_to_str(topic_id), operation=operation),  # type: ignore[arg-type]
            context="topic",
        )
        return TopicState(status.state)

    async def set_topic_deduplication_policy(
        self,
        topic: str,
        strategy: DeduplicationStrategy | str | int,
        offset: OffsetPosition | str | int = OffsetPosition.OFFSET_EARLIEST,
        keys: list[str] | None = None,
        fields: list[str] | None = None,
        overwrite_duplicate: bool = False,
    ) -> TopicState:
        """Set how the topic deduplicates events; returns the topic's state."""
        topic_id = await self.resolve(topic)
        policy = topic_pb2.TopicPolicy(
            id=ids.ulid_to_str(topic_id),
            deduplication_policy=topic_pb2.Deduplication(
                strategy=DeduplicationStrategy.parse(strategy),  # type: ignore[arg-type]
                offset=OffsetPosition.parse(offset),  # type: ignore[arg-type]
                keys=keys or [],
                fields=fields or [],
                overwrite_duplicate=overwrite_duplicate,
            ),
        )
        status = await self._connection.unary("SetTopicPolicy", policy, context="topic")
        return TopicState(status.state)


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name.strip():
        raise exceptions.InvalidTopicName("a topic name is required")

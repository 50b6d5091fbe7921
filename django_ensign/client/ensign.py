"""The :class:`Ensign` client: publish, subscribe, query, manage topics."""

from __future__ import annotations

import asyncio
import contextlib
import os
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from django_ensign.client import exceptions
from django_ensign.client.config import resolve
from django_ensign.client.connection import (
    KEEPALIVE_TIMEOUT,
    MAX_KEEPALIVE_TIMEOUT,
    Connection,
    LoopResources,
)
from django_ensign.client.deadline import SendDeadline
from django_ensign.client.events import Event
from django_ensign.client.publisher import Callback, Publisher, PublisherOptions
from django_ensign.client.query import ParamValue, QueryCursor, build_query
from django_ensign.client.status import ProjectInfo, ServerStatus
from django_ensign.client.subscriber import (
    DEFAULT_BATCH_SIZE,
    Start,
    Subscription,
    as_query,
    consumer_group,
    start_position,
)
from django_ensign.client.topics import (
    DeduplicationStrategy,
    OffsetPosition,
    Topic,
    TopicAdmin,
    TopicCache,
    TopicState,
    topic_id_bytes,
)
from django_ensign.proto.api.v1beta1 import ensign_pb2, groups_pb2, query_pb2, topic_pb2
from django_ensign.wire import ids

_PUBLISHER = "publisher"
_SUBSCRIPTIONS = "subscriptions"


class Ensign:
    """An Ensign client; usable from any event loop (each gets its own channel and stream).

    Credentials come from ``client_id``/``client_secret``, else ``cred_path`` (a JSON file
    with ``ClientID``/``ClientSecret``), else ``ENSIGN_CLIENT_ID``/``ENSIGN_CLIENT_SECRET``.
    ``endpoint``, ``insecure`` and ``auth_url`` default to ``ENSIGN_ENDPOINT``,
    ``ENSIGN_INSECURE`` and ``ENSIGN_AUTH_URL``, then to the hosted service; TLS is used
    unless the endpoint is loopback or ``insecure`` is true.

    ``max_in_flight`` bounds the events published but not yet acked or nacked (``publish``
    waits for room); ``ack_timeout`` is how long an event may wait for its outcome before
    ``wait_for_ack`` raises :class:`PublishTimeout`; ``batch=False`` keeps to plain Ensign
    framing even when the server offers the batch extension. ``keepalive_timeout`` is how
    long a keepalive ping, and on Linux any sent bytes (gRPC sets it as TCP_USER_TIMEOUT),
    may go unacknowledged before the connection is dropped (reconnecting resends).
    """

    def __init__(
        self,
        client_id: str = "",
        client_secret: str = "",
        cred_path: str | os.PathLike[str] = "",
        endpoint: str | None = None,
        insecure: bool | None = None,
        auth_url: str | None = None,
        disable_topic_cache: bool = False,  # accepted for PyEnsign compatibility; unused
        *,
        max_in_flight: int = 5000,
        ack_timeout: float = 60.0,
        batch: bool = True,
        rpc_timeout: float = 30.0,
        keepalive_timeout: float = KEEPALIVE_TIMEOUT,
    ) -> None:
        if max_in_flight < 1:
            raise exceptions.ConfigurationError("max_in_flight must be at least 1")
        if ack_timeout <= 0:
            raise exceptions.ConfigurationError("ack_timeout must be positive")
        if not 0.001 <= keepalive_timeout <= MAX_KEEPALIVE_TIMEOUT:  # also NaN
            raise exceptions.ConfigurationError(
                f"keepalive_timeout must be from 0.001 to {MAX_KEEPALIVE_TIMEOUT:g} seconds"
            )
        self.config = resolve(
            client_id=client_id,
            client_secret=client_secret,
            cred_path=cred_path,
            endpoint=endpoint,
            insecure=insecure,
            auth_url=auth_url,
        )
        self.client_id = ids.ulid_to_str(ids.new_ulid())
        self.batch = batch
        self._options = PublisherOptions(
            client_id=self.client_id,
            max_in_flight=max_in_flight,
            ack_timeout=ack_timeout,
            batch=batch,
        )
        self._connection = Connection(
            self.config, rpc_timeout=rpc_timeout, keepalive_timeout=keepalive_timeout
        )
        self.topics = TopicCache()
        self._admin = TopicAdmin(self._connection, self.topics)
        self._closed = False
        self._last_publisher: tuple[asyncio.AbstractEventLoop, Publisher] | None = None

    # -- publishing --------------------------------------------------------------

    async def publish(
        self,
        topic: str,
        *events: Event | Sequence[Event],
        on_ack: Callback | None = None,
        on_nack: Callback | None = None,
        ensure_exists: bool = False,
        send_by: SendDeadline | None = None,
    ) -> None:
        """Queue events for a topic (name or id) and return; waits while the window is full.

        ``on_ack(ack)`` / ``on_nack(nack)`` (plain or async functions) run as outcomes
        arrive; an event that gets no answer before ``ack_timeout`` (or that the client
        cannot send at all) reaches ``on_nack`` as a client-made Nack with code TIMEOUT
        (or UNKNOWN). ``await event.wait_for_ack()`` gives the outcome of one event.
        UnknownTopic if the topic does not exist and ``ensure_exists`` is false. With
        ``send_by`` (a :class:`~django_ensign.client.deadline.SendDeadline`), an event
        still unsent when it passes (the server down, or a stream broken before its ack)
        is never sent: it fails with ``SendDeadlinePassed``.
        """
        self._check_open()
        _check_topic(topic)
        flat = _flatten(events)
        topic_id = await self._publish_topic_id(topic, ensure_exists)
        await self._publisher().publish(topic_id, flat, on_ack, on_nack, send_by)

    async def publish_encoded(
        self,
        topic: str,
        events: Sequence[tuple[bytes, bytes]],
        on_ack: Callback | None = None,
        on_nack: Callback | None = None,
        ensure_exists: bool = False,
        send_by: SendDeadline | None = None,
    ) -> None:
        """Publish ``(local id, serialized Event)`` pairs: :meth:`publish` without Event objects.

        For programs that publish many records and track outcomes themselves, by the
        local id they chose (the outbox relay): encode each with
        :func:`~django_ensign.client.events.encode_event` and an id from
        :func:`~django_ensign.client.events.new_local_id`. The events are sent, resent
        and timed out as :meth:`publish` does; ``on_ack`` and ``on_nack`` are all that
        hear of their outcomes. InvalidEvent, with nothing sent, when an id is repeated in
        ``events`` or belongs to an event still in flight. With no events it only looks the
        topic up (creating it with ``ensure_exists``), so a caller can time its events from
        the send.
        """
        self._check_open()
        _check_topic(topic)
        topic_id = await self._publish_topic_id(topic, ensure_exists)
        await self._publisher().publish_encoded(topic_id, events, on_ack, on_nack, send_by)

    async def flush(self, timeout: float | None = 2.0) -> None:  # noqa: ASYNC109 (the SDK contract)
        """Wait until every event published from this loop is acked or nacked.

        Raises :class:`FlushTimeout` (a ``TimeoutError``) after ``timeout`` seconds;
        ``None`` waits as long as the events' own deadlines (``ack_timeout``).
        """
        if timeout is not None and timeout <= 0:
            raise exceptions.ConfigurationError("timeout must be greater than 0")
        found = self._connection.current()
        if found is not None and _PUBLISHER in found.extras:
            await found.extras[_PUBLISHER].flush(timeout)

    async def _publish_topic_id(self, topic: str, ensure_exists: bool) -> bytes:
        raw = topic_id_bytes(topic)
        if raw is not None:
            return raw
        cached = self.topics.id(topic)
        if cached is not None:
            return cached
        if ensure_exists:
            return ids.ulid_from_str(await self._admin.ensure_topic_exists(topic))
        found = await self._admin.lookup(topic)
        if found is None:
            raise exceptions.UnknownTopic(
                f"topic {topic!r} does not exist: create it first or publish with "
                "ensure_exists=True",
                topic=topic,
            )
        return found

    def _publisher(self) -> Publisher:
        loop = asyncio.get_running_loop()
        last = self._last_publisher
        if last is not None and last[0] is loop:
            return last[1]
        extras = self._connection.resources().extras
        publisher = extras.get(_PUBLISHER)
        if publisher is None:
            publisher = extras[_PUBLISHER] = Publisher(self._connection, self.topics, self._options)
        assert isinstance(publisher, Publisher)
        self._last_publisher = (loop, publisher)
        return publisher

    # -- subscribing and querying -------------------------------------------------

    def subscribe(
        self,
        *topics: str | Sequence[str],
        consumer_group: str | groups_pb2.ConsumerGroup | None = None,
        query: str | query_pb2.Query | None = None,
        batch_size: int | None = None,
        reconnect: bool = True,
        window: int = 0,
        start: Start = "earliest",
    ) -> Subscription:
        """Events of the topics (names or ids) as they are committed: ``async for ev in ...``.

        With ``consumer_group`` (a name or ConsumerGroup) the server remembers what was
        acked and redelivers what was not; ``query`` (EnSQL) replays matching stored
        events first. ``batch_size`` asks a server with the batch extension for up to that
        many events per message; ``window`` caps the events delivered but not yet acked
        (0: the server's default), which keeps slow handlers within a group's delivery
        timeout. ``start`` says where a group begins on a topic it has no position on
        yet: ``"earliest"`` (the topic's first event) or ``"latest"`` (only events
        committed after the subscription opens; the embedded server records that
        position at once). A group with a position resumes after it either way; without
        a group ``start`` does not apply: the stream is a live tail (after the replay of
        ``query``, if given).
        """
        self._check_open()
        names = _flatten_topics(topics)
        if batch_size is None:
            batch_size = DEFAULT_BATCH_SIZE if self.batch else 0
        elif not self.batch:
            batch_size = 0
        if batch_size < 0 or window < 0:
            raise exceptions.ConfigurationError("batch_size and window must not be negative")
        subscription = Subscription(
            self._connection,
            self.topics,
            names,
            client_id=self.client_id,
            group=_consumer_group(consumer_group),
            query=as_query(query),
            batch_size=batch_size,
            window=window,
            start=start_position(start),
            reconnect=reconnect,
            batch=self.batch,
            on_open=self._track,
        )
        return subscription

    def _track(self, subscription: Subscription) -> None:
        """Remember an opened subscription so close() ends it."""
        self._check_open()
        extras = self._connection.resources().extras
        extras.setdefault(_SUBSCRIPTIONS, weakref.WeakSet()).add(subscription)

    def query(
        self,
        query: str,
        params: Mapping[str, ParamValue] | None = None,
        include_duplicates: bool = False,
    ) -> QueryCursor:
        """Stored events matching an EnSQL query: ``async for`` it, or ``await`` it for a cursor."""
        self._check_open()
        return QueryCursor(
            self._connection, self._admin, build_query(query, params, include_duplicates)
        )

    # -- topics --------------------------------------------------------------------

    async def create_topic(self, topic_name: str) -> str:
        """Create a topic; returns its id. AlreadyExists if the name is taken."""
        return await self._admin.create_topic(topic_name)

    async def ensure_topic_exists(self, topic_name: str) -> str:
        """The id of a topic, created first if needed."""
        return await self._admin.ensure_topic_exists(topic_name)

    async def topic_exists(self, name: str) -> bool:
        """Whether the project has a topic of this name."""
        return await self._admin.topic_exists(name)

    async def topic_id(self, name: str) -> str:
        """The id of a topic name; TopicNotFound if there is none."""
        return await self._admin.topic_id(name)

    async def get_topics(self) -> list[Topic]:
        """Every topic of the project."""
        return await self._admin.get_topics()

    list_topics = get_topics

    async def retrieve_topic(self, topic: str) -> Topic:
        """One topic by name or id."""
        return await self._admin.retrieve_topic(topic)

    async def archive_topic(self, topic: str) -> TopicState:
        """Make a topic read-only (published events are then nacked TOPIC_ARCHIVED)."""
        return await self._admin.archive_topic(topic)

    async def destroy_topic(self, topic: str) -> TopicState:
        """Delete a topic and all its events; returns DELETING."""
        return await self._admin.destroy_topic(topic)

    async def set_topic_deduplication_policy(
        self,
        id: str,
        strategy: DeduplicationStrategy | str | int,
        offset: OffsetPosition | str | int = OffsetPosition.OFFSET_EARLIEST,
        keys: list[str] | None = None,
        fields: list[str] | None = None,
        overwrite_duplicate: bool = False,
    ) -> TopicState:
        """Set a topic's (name or id) deduplication policy; returns its state."""
        return await self._admin.set_topic_deduplication_policy(
            id, strategy, offset, keys, fields, overwrite_duplicate
        )

    async def set_topic_sharding_strategy(self, id: str, strategy: str | int = 1) -> TopicState:
        """Set a topic's sharding strategy (single-node servers answer Unimplemented)."""
        topic_id = await self._admin.resolve(id)
        value = (
            topic_pb2.ShardingStrategy.Value(strategy.upper())
            if isinstance(strategy, str)
            else strategy
        )
        status = await self._connection.unary(
            "SetTopicPolicy",
            topic_pb2.TopicPolicy(id=ids.ulid_to_str(topic_id), sharding_strategy=value),  # type: ignore[arg-type]
            context="topic",
        )
        return TopicState(status.state)

    # -- server -------------------------------------------------------------------

    async def status(self) -> ServerStatus:
        """The server's health and version (needs no credentials)."""
        msg = await self._connection.unary("Status", ensign_pb2.HealthCheck(), auth=False)
        return ServerStatus.from_proto(msg)

    async def info(self, topic_ids: Sequence[str] | None = None) -> ProjectInfo:
        """Event, duplicate and byte counts of the project or of the given topics."""
        if topic_ids is not None and isinstance(topic_ids, str):
            raise exceptions.ConfigurationError("topic_ids must be a list of topic ids or names")
        raw = [await self._admin.resolve(topic) for topic in topic_ids or ()]
        msg = await self._connection.unary("Info", ensign_pb2.InfoRequest(topics=raw))
        return ProjectInfo.from_proto(msg)

    # -- lifecycle ------------------------------------------------------------------

    async def close(self) -> None:
        """Wait for the outcome of every published event, then close streams and channels."""
        if self._closed:
            return
        found = self._connection.current()
        if found is not None:
            await _close_loop(found)
        for loop, other in self._connection.others():
            if loop.is_running() and not loop.is_closed():
                with contextlib.suppress(RuntimeError):
                    await asyncio.wrap_future(
                        asyncio.run_coroutine_threadsafe(_close_loop(other), loop)
                    )
        self._closed = True
        self._last_publisher = None
        self._connection.closed = True
        await self._connection.close_current()
        self._connection.close_others()

    async def __aenter__(self) -> Ensign:
        self._check_open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise exceptions.ClientClosed()


async def _close_loop(found: LoopResources) -> None:
    for subscription in list(found.extras.get(_SUBSCRIPTIONS, ())):
        await subscription.close()
    publisher = found.extras.get(_PUBLISHER)
    if publisher is not None:
        await publisher.close()


def _check_topic(topic: str) -> None:
    if not isinstance(topic, str):
        raise exceptions.InvalidTopicName(
            f"topic must be a name or id string, got {type(topic).__name__}"
        )
    if not topic.strip():
        raise exceptions.InvalidTopicName("a topic name or id is required")


def _flatten(events: tuple[Any, ...]) -> list[Event]:
    if len(events) == 1 and isinstance(events[0], list | tuple):
        events = tuple(events[0])
    if not events:
        raise exceptions.InvalidEvent("no events to publish")
    for event in events:
        if not isinstance(event, Event):
            raise exceptions.InvalidEvent(
                f"publish takes Event objects, got {type(event).__name__}"
            )
    return list(events)


def _flatten_topics(topics: tuple[Any, ...]) -> list[str]:
    if len(topics) == 1 and isinstance(topics[0], list | tuple):
        topics = tuple(topics[0])
    if not topics:
        raise exceptions.InvalidTopicName("subscribe needs at least one topic")
    for topic in topics:
        if not isinstance(topic, str) or not topic.strip():
            raise exceptions.InvalidTopicName(f"topics must be names or ids, got {topic!r}")
    return list(topics)


def _consumer_group(group: str | groups_pb2.ConsumerGroup | None) -> Any:
    return consumer_group(group)

"""Events to publish (:class:`Event`), events received (:class:`ReceivedEvent`), and outcomes."""

from __future__ import annotations

import asyncio
import enum
import itertools
import json
import os
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from google.protobuf.timestamp_pb2 import Timestamp

from django_ensign.client import exceptions, framing
from django_ensign.proto.api.v1beta1 import ensign_pb2, event_pb2
from django_ensign.wire import mimetypes

if TYPE_CHECKING:
    from django_ensign.client.subscriber import Subscription

NackCode = ensign_pb2.Nack.Code

_SEMVER = re.compile(r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:[-+].*)?$")

# local ids: 48-bit ms of process start, 32 random bits, then a 48-bit counter. Unique per
# process without a syscall per event; the server treats them as opaque bytes.
_ID_PREFIX = (time.time_ns() // 1_000_000).to_bytes(6, "big") + os.urandom(4)
_ID_COUNTER = itertools.count(int.from_bytes(os.urandom(3), "big"))


def new_local_id() -> bytes:
    """A fresh 16-byte publisher-side event id (ULID-shaped)."""
    return _ID_PREFIX + (next(_ID_COUNTER) & 0xFFFF_FFFF_FFFF).to_bytes(6, "big")


def timestamp_to_datetime(ts: Timestamp) -> datetime:
    """An aware UTC datetime for a protobuf Timestamp."""
    return datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, tz=UTC)


def parse_version(version: str) -> tuple[int, int, int]:
    """``"1.2.0"`` → ``(1, 2, 0)``; pre-release and build suffixes are ignored."""
    if not isinstance(version, str):
        raise exceptions.InvalidEvent(f"schema_version must be a string, got {version!r}")
    match = _SEMVER.match(version.strip())
    if match is None:
        raise exceptions.InvalidEvent(f"schema_version {version!r} is not a semantic version")
    parsed = int(match[1]), int(match[2]), int(match[3])
    if len(_VERSION_CACHE) < 256:
        _VERSION_CACHE[version] = parsed
    return parsed


_TYPE_FIELDS: dict[tuple[str, tuple[int, int, int]], bytes] = {}
# Most programs use a handful of mimetypes and versions; parsing each once is enough.
_MIME_CACHE: dict[str | int, int] = {}
_VERSION_CACHE: dict[str, tuple[int, int, int]] = {}


def _type_field(name: str, version: tuple[int, int, int]) -> bytes:
    key = (name, version)
    found = _TYPE_FIELDS.get(key)
    if found is None:
        found = framing.event_type(name, version)
        if len(_TYPE_FIELDS) < 4096:
            _TYPE_FIELDS[key] = found
    return found


def parse_mimetype(mimetype: str | int) -> int:
    """The ``mimetype.v1beta1.MIME`` value of a mimetype string, enum name or number."""
    try:
        value = mimetypes.parse(mimetype)
    except mimetypes.UnknownMimetype as err:
        raise exceptions.UnknownMimetypeError(str(err)) from None
    if len(_MIME_CACHE) < 256 and not isinstance(mimetype, bool):
        _MIME_CACHE[mimetype] = value
    return value


def _checked_data(data: object) -> bytes:
    if type(data) is bytes:
        checked = data
    elif isinstance(data, bytearray | memoryview):
        checked = bytes(data)
    else:
        raise exceptions.EventDataTypeError(f"event data must be bytes, got {type(data).__name__}")
    if not checked:
        raise exceptions.InvalidEvent("event data is empty")
    return checked


def _checked_mimetype(mimetype: str | int) -> int:
    if mimetype is None or mimetype == "":
        raise exceptions.UnknownMimetypeError("no mimetype given")
    cached = _MIME_CACHE.get(mimetype) if type(mimetype) is not bool else None
    return cached if cached is not None else parse_mimetype(mimetype)


def _checked_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise exceptions.InvalidEvent("schema_name must be a non-empty string")
    return name.strip()


def _checked_version(version: str) -> tuple[int, int, int]:
    cached = _VERSION_CACHE.get(version) if type(version) is str else None
    return cached or parse_version(version)


def _check_size(data: bytes, meta: Mapping[str, str]) -> None:
    size = len(data)
    for key, value in meta.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise exceptions.InvalidEvent("meta keys and values must be strings")
        size += len(key) + len(value)
    if size > framing.MAX_EVENT_PAYLOAD_BYTES:
        raise exceptions.InvalidEvent(
            f"event data and metadata hold {size:,} bytes, more than one publish message "
            f"can carry ({framing.MAX_EVENT_PAYLOAD_BYTES:,})"
        )


def encode_event(
    data: bytes,
    mimetype: str | int,
    schema_name: str,
    schema_version: str,
    meta: Mapping[str, str] | None = None,
) -> bytes:
    """The serialized ``Event`` of these fields, created now, checked as :class:`Event` checks.

    For a caller that turns many records into events and tracks their outcomes itself
    (the outbox relay): publish the bytes with :meth:`Ensign.publish_encoded`, with no
    :class:`Event` object per event. Raises what :class:`Event` raises for the same input.
    """
    data = _checked_data(data)
    number = _checked_mimetype(mimetype)
    type_field = _type_field(_checked_name(schema_name), _checked_version(schema_version))
    meta = meta or {}
    _check_size(data, meta)
    return framing.event(data, meta, number, type_field, time.time_ns())


class EventState(enum.IntEnum):
    """Where an event is in its life."""

    INITIALIZED = 0
    QUEUED = 1
    PUBLISHED = 2
    SUBSCRIBED = 3
    ACKED = 4
    NACKED = 5


class Ack:
    """The server stored the event: ``id`` is its local id, ``committed`` its commit time."""

    __slots__ = ("committed", "id")

    def __init__(self, id: bytes, committed: Timestamp) -> None:
        self.id = id
        self.committed = committed

    @property
    def committed_at(self) -> datetime:
        """The commit time as an aware UTC datetime."""
        return timestamp_to_datetime(self.committed)

    def __repr__(self) -> str:
        return f"Ack(id={self.id.hex()}, committed_at={self.committed_at.isoformat()})"


class Nack:
    """The server refused the event: ``code`` is an ``ensign.v1beta1.Nack.Code`` value.

    An ``on_nack`` callback also hears of events that failed in the client (a timeout, a
    stream the server would not open): their Nack is made by the client, and ``cause``
    holds the error behind it (None in the server's Nacks).
    """

    __slots__ = ("cause", "code", "error", "id")

    def __init__(
        self, id: bytes, code: int, error: str = "", cause: BaseException | None = None
    ) -> None:
        self.id = id
        self.code = code
        self.error = error
        self.cause = cause

    @property
    def code_name(self) -> str:
        """The code's enum name, e.g. ``"TOPIC_ARCHIVED"``."""
        try:
            return str(NackCode.Name(self.code))  # type: ignore[arg-type]
        except ValueError:
            return str(self.code)

    def __repr__(self) -> str:
        return f"Nack(id={self.id.hex()}, code={self.code_name}, error={self.error!r})"


Outcome = Ack | Nack


class Event:
    """An event to publish: bytes ``data`` of a ``mimetype``, an optional schema and metadata."""

    __slots__ = (
        "_created_ns",
        "_failure",
        "_outcome",
        "_state",
        "_type_field",
        "_type_name",
        "_version",
        "_waiter",
        "data",
        "local_id",
        "meta",
        "mimetype",
    )

    def __init__(
        self,
        data: bytes,
        mimetype: str | int = "application/json",
        schema_name: str = "Unknown",
        schema_version: str = "0.0.0",
        meta: Mapping[str, str] | None = None,
        created: datetime | None = None,
    ) -> None:
        self.data: bytes = _checked_data(data)
        self.mimetype: int = _checked_mimetype(mimetype)
        self._type_name = _checked_name(schema_name)
        self._version = _checked_version(schema_version)
        self._type_field: bytes | None = None
        self.meta: dict[str, str] = dict(meta) if meta else {}
        _check_size(self.data, self.meta)
        self._created_ns = (
            time.time_ns() if created is None else int(created.timestamp() * 1_000_000_000)
        )
        self.local_id: bytes = new_local_id()
        self._state = EventState.INITIALIZED
        self._outcome: Outcome | None = None
        self._failure: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    # -- fields ----------------------------------------------------------------

    @property
    def type_name(self) -> str:
        """The schema name."""
        return self._type_name

    @type_name.setter
    def type_name(self, name: str) -> None:
        self._type_name = name
        self._type_field = None

    @property
    def type_version(self) -> str:
        """The schema's semantic version, e.g. ``"1.2.0"``."""
        return "{}.{}.{}".format(*self._version)

    @type_version.setter
    def type_version(self, version: str) -> None:
        self._version = parse_version(version)
        self._type_field = None

    @property
    def created(self) -> Timestamp:
        """When the event was created, as a protobuf Timestamp."""
        seconds, nanos = divmod(self._created_ns, 1_000_000_000)
        return Timestamp(seconds=seconds, nanos=nanos)

    @created.setter
    def created(self, value: Timestamp | datetime) -> None:
        if isinstance(value, datetime):
            self._created_ns = int(value.timestamp() * 1_000_000_000)
        else:
            self._created_ns = value.seconds * 1_000_000_000 + value.nanos

    # -- encoding ------------------------------------------------------------

    def proto(self) -> event_pb2.Event:
        """The ``ensign.v1beta1.Event`` message of this event."""
        return event_pb2.Event.FromString(self.serialize())

    def serialize(self) -> bytes:
        """The serialized ``Event`` carried in ``EventWrapper.event``."""
        type_field = self._type_field
        if type_field is None:
            type_field = self._type_field = _type_field(self._type_name, self._version)
        return framing.event(self.data, self.meta, self.mimetype, type_field, self._created_ns)

    # -- state ---------------------------------------------------------------

    @property
    def state(self) -> EventState:
        """The event's current state."""
        return self._state

    @property
    def mimetype_name(self) -> str:
        """The mimetype's canonical name, e.g. ``"application/json"``."""
        return mimetypes.name(self.mimetype)

    @property
    def outcome(self) -> Outcome | None:
        """The Ack or Nack once it arrived."""
        return self._outcome

    @property
    def committed(self) -> Timestamp | None:
        """The commit time once acked."""
        return self._outcome.committed if isinstance(self._outcome, Ack) else None

    @property
    def error(self) -> Nack | None:
        """The Nack once nacked."""
        return self._outcome if isinstance(self._outcome, Nack) else None

    def published(self) -> bool:
        """Whether the event was sent to the server (or has an outcome)."""
        return self._state >= EventState.PUBLISHED

    def acked(self) -> bool:
        """Whether the server acked the event."""
        return self._state == EventState.ACKED

    def nacked(self) -> bool:
        """Whether the server nacked the event."""
        return self._state == EventState.NACKED

    def nack_error(self) -> Nack | None:
        """The Nack if the event was nacked."""
        return self.error

    async def wait_for_ack(self, timeout: float | None = None) -> Outcome:  # noqa: ASYNC109
        """Wait for the server's Ack or Nack of this published event.

        Raises :class:`PublishTimeout` after ``timeout`` seconds (the event stays in
        flight and may still be answered), or when the client's per-event deadline
        (``ack_timeout``) passed without an answer.
        """
        if self._state == EventState.INITIALIZED:
            raise exceptions.EnsignError("the event was not published")
        if self._outcome is None and self._failure is None:
            if self._waiter is None:
                self._waiter = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._waiter), timeout)
            except TimeoutError:
                raise exceptions.PublishTimeout(
                    f"no ack or nack within {timeout} seconds"
                ) from None
        if self._failure is not None:
            raise self._failure
        assert self._outcome is not None
        return self._outcome

    # -- called by the publisher -----------------------------------------------

    def _reset(self) -> None:
        if self._state in (EventState.QUEUED, EventState.PUBLISHED) and self._failure is None:
            raise exceptions.InvalidEvent("the event is already being published")
        if self._state != EventState.INITIALIZED:
            self.local_id = new_local_id()
        self._outcome = None
        self._failure = None
        self._waiter = None
        self._state = EventState.QUEUED

    def _settle(self, outcome: Outcome | None, failure: BaseException | None = None) -> None:
        self._outcome = outcome
        self._failure = failure
        if isinstance(outcome, Ack):
            self._state = EventState.ACKED
        elif isinstance(outcome, Nack):
            self._state = EventState.NACKED
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            loop = waiter.get_loop()
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if loop is running:
                waiter.set_result(None)
            elif not loop.is_closed():
                loop.call_soon_threadsafe(_wake, waiter)

    def __repr__(self) -> str:
        return (
            f"Event(data={self.data[:40]!r}, mimetype={self.mimetype_name!r}, "
            f"schema_name={self.type_name!r}, schema_version={self.type_version!r}, "
            f"state={self._state.name})"
        )


_EventMessage = event_pb2.Event


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class ReceivedEvent:
    """An event delivered by a subscription or a query.

    Whatever the server sent is handed over as such: an event whose payload does not
    parse has ``data == b""``, ``raw`` holding the bytes and ``decode_error`` saying why;
    an unknown mimetype keeps its number in ``mimetype``.
    """

    __slots__ = (
        "_state",
        "_subscription",
        "committed",
        "created",
        "data",
        "decode_error",
        "epoch",
        "id",
        "is_duplicate",
        "meta",
        "mimetype",
        "offset",
        "raw",
        "topic",
        "topic_id",
        "type_name",
        "type_version",
    )

    def __init__(
        self,
        wrapper: event_pb2.EventWrapper,
        topic: str = "",
        subscription: Subscription | None = None,
    ) -> None:
        self.id: bytes = wrapper.id
        self.topic_id: bytes = wrapper.topic_id
        self.topic: str = topic
        self.offset: int = wrapper.offset
        self.epoch: int = wrapper.epoch
        self.committed: Timestamp = wrapper.committed
        self.is_duplicate: bool = wrapper.is_duplicate
        raw = self.raw = wrapper.event
        event = None
        error = "empty event"
        if raw:
            try:
                event = _EventMessage.FromString(raw)
            except Exception as err:  # protobuf raises its own DecodeError types
                error = f"undecodable event: {err}"
        if event is None:
            self.decode_error: str | None = error
            self.data: bytes = b""
            self.meta: dict[str, str] = {}
            self.mimetype: int = 0
            self.type_name: str = ""
            self.type_version: str = "0.0.0"
            self.created: Timestamp = Timestamp()
        else:
            self.decode_error = None
            self.data = event.data
            metadata = event.metadata
            self.meta = dict(metadata) if metadata else {}
            self.mimetype = event.mimetype
            kind = event.type
            self.type_name = kind.name
            self.type_version = f"{kind.major_version}.{kind.minor_version}.{kind.patch_version}"
            self.created = event.created
        self._subscription = subscription
        self._state = EventState.SUBSCRIBED if subscription is not None else EventState.INITIALIZED

    @property
    def committed_at(self) -> datetime:
        """The server's commit time as an aware UTC datetime."""
        return timestamp_to_datetime(self.committed)

    @property
    def created_at(self) -> datetime:
        """The publisher's creation time as an aware UTC datetime."""
        return timestamp_to_datetime(self.created)

    @property
    def mimetype_name(self) -> str:
        """The mimetype's canonical name; ``mimetype/<n>`` for a value Ensign does not define."""
        return mimetypes.name(self.mimetype)

    @property
    def known_mimetype(self) -> bool:
        """Whether the mimetype is one Ensign defines."""
        return self.mimetype in mimetypes.NAMES

    def acked(self) -> bool:
        """Whether this subscriber acked the event."""
        return self._state == EventState.ACKED

    def nacked(self) -> bool:
        """Whether this subscriber nacked the event."""
        return self._state == EventState.NACKED

    def decode(self) -> Any:
        """The data as a Python object for JSON and text mimetypes, else the bytes."""
        if self.mimetype in (50, 51):
            try:
                return json.loads(self.data)
            except ValueError as err:
                raise exceptions.InvalidEvent("the event data is not valid JSON") from err
        if self.mimetype in (1, 2, 3, 4):
            try:
                return self.data.decode()
            except UnicodeDecodeError as err:
                raise exceptions.InvalidEvent("the event data is not UTF-8 text") from err
        return self.data

    async def ack(self) -> bool:
        """Tell the server this event was processed; False if it was already nacked."""
        if self._state == EventState.ACKED:
            return True
        if self._state == EventState.NACKED:
            return False
        if self._subscription is None:
            raise exceptions.CouldNotAck()
        await self._subscription.send_ack(self.id)
        self._state = EventState.ACKED
        return True

    async def nack(self, code: int = NackCode.UNPROCESSED, error: str = "") -> bool:
        """Tell the server this event was not processed; False if it was already acked."""
        if self._state == EventState.NACKED:
            return True
        if self._state == EventState.ACKED:
            return False
        if self._subscription is None:
            raise exceptions.CouldNotAck()
        await self._subscription.send_nack(self.id, int(code), error)
        self._state = EventState.NACKED
        return True

    def __repr__(self) -> str:
        return (
            f"ReceivedEvent(topic={self.topic!r}, offset={self.offset}, "
            f"mimetype={self.mimetype_name!r}, type={self.type_name!r} v{self.type_version}, "
            f"data={self.data[:40]!r})"
        )

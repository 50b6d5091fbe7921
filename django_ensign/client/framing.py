"""Hand-built protobuf frames for the publish hot path.

Building an ``EventWrapper`` and a ``PublisherRequest`` message object per event costs
more than the event itself; the wire encoding of these few length-delimited fields is
fixed by the schema, so the publisher concatenates bytes instead. A unit test checks
the frames against the generated classes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from django_ensign.wire.protowire import varint as varint  # part of this module's surface

# (field number << 3) | 2 (length-delimited), as varints.
#: The largest gRPC message a client sends or receives: above the server's 5,243,000-byte
#: event limit with room for batches of events.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
#: The most an event's data and metadata may hold: a bigger event would not fit one
#: message, and a message over the limit breaks the whole stream instead of being nacked.
#: 1 MiB is left for the event's other fields and the wrapper.
MAX_EVENT_PAYLOAD_BYTES = MAX_MESSAGE_BYTES - 1024 * 1024

#: The largest message a server without django-ensign's batch extension receives: gRPC's
#: default, which Ensign's own server keeps (PROTOCOL.md §3). A bigger one ends the stream
#: there, not with a nack, and ends it again each time it is resent.
STOCK_MAX_MESSAGE_BYTES = 4 * 1024 * 1024

_WRAPPER_TOPIC_ID = b"\x12"  # EventWrapper.topic_id = 2
_WRAPPER_EVENT = b"\x4a"  # EventWrapper.event = 9
_WRAPPER_LOCAL_ID = b"\x82\x01"  # EventWrapper.local_id = 16
_REQUEST_EVENT = b"\x0a"  # PublisherRequest.event = 1
_REQUEST_EVENTS = b"\xa2\x06"  # PublisherRequest.events = 100 (EventBatch)


def event_frame(topic_id: bytes, event: bytes, local_id: bytes) -> bytes:
    """A serialized ``PublisherRequest{event: EventWrapper}`` with what a publisher sends.

    Byte for byte, it is also an ``EventBatch`` entry: ``PublisherRequest.event`` and
    ``EventBatch.events`` are both field 1 holding an ``EventWrapper``. So one frame per
    event serves plain framing as is and the batch extension through :func:`batch_request`.
    """
    topic_len, event_len, local_len = (
        varint(len(topic_id)),
        varint(len(event)),
        varint(len(local_id)),
    )
    size = len(topic_len) + len(topic_id) + len(event_len) + len(event) + len(local_len)
    size += len(local_id) + 4  # the three field tags: 1, 1 and 2 bytes
    return b"".join(
        (
            _REQUEST_EVENT,
            varint(size),
            _WRAPPER_TOPIC_ID,
            topic_len,
            topic_id,
            _WRAPPER_EVENT,
            event_len,
            event,
            _WRAPPER_LOCAL_ID,
            local_len,
            local_id,
        )
    )


def batch_request(frames: Iterable[bytes]) -> bytes:
    """A serialized ``PublisherRequest{events: EventBatch}`` of :func:`event_frame` frames."""
    batch = b"".join(frames)
    return _REQUEST_EVENTS + varint(len(batch)) + batch


_EVENT_DATA = b"\x12"  # Event.data = 2
_EVENT_METADATA = b"\x1a"  # Event.metadata = 3 (map entries: key = 1, value = 2)
_EVENT_MIMETYPE = b"\x20"  # Event.mimetype = 4 (varint)
_EVENT_TYPE = b"\x2a"  # Event.type = 5
_EVENT_CREATED = b"\x7a"  # Event.created = 15
_TYPE_VERSIONS = (b"\x10", b"\x18", b"\x20")  # Type.major/minor/patch_version = 2, 3, 4


def _string(tag: bytes, value: bytes) -> bytes:
    return tag + varint(len(value)) + value


def event_type(name: str, version: tuple[int, int, int]) -> bytes:
    """The length-prefixed ``Event.type`` field for a schema name and version."""
    body = _string(b"\x0a", name.encode()) if name else b""
    for tag, number in zip(_TYPE_VERSIONS, version, strict=True):
        if number:
            body += tag + varint(number)
    return _string(_EVENT_TYPE, body)


#: Encoded ``key`` halves of metadata map entries: a publisher sends the same few keys
#: on every event. Bounded, so arbitrary keys cannot grow it without limit.
_META_KEYS: dict[str, bytes] = {}
_META_KEYS_MAX = 1024
#: The last ``created`` second's encoding: events published together share it.
_last_second: tuple[int, bytes] = (0, b"")


def _meta_key(key: str) -> bytes:
    encoded = _META_KEYS.get(key)
    if encoded is None:
        encoded = _string(b"\x0a", key.encode())
        if len(_META_KEYS) < _META_KEYS_MAX:
            _META_KEYS[key] = encoded
    return encoded


def event(
    data: bytes,
    meta: Mapping[str, str],
    mimetype: int,
    type_field: bytes,
    created_ns: int,
) -> bytes:
    """A serialized ``Event``; ``type_field`` comes from :func:`event_type`."""
    global _last_second
    parts = [_EVENT_DATA, varint(len(data)), data]
    for key, value in meta.items():
        raw = value.encode()
        entry = b"".join((_meta_key(key), b"\x12", varint(len(raw)), raw))
        parts += (_EVENT_METADATA, varint(len(entry)), entry)
    if mimetype:
        parts.append(_EVENT_MIMETYPE + varint(mimetype))
    parts.append(type_field)
    seconds, nanos = divmod(created_ns, 1_000_000_000)
    if seconds == _last_second[0]:
        stamp = _last_second[1]
    else:
        stamp = b"\x08" + varint(seconds) if seconds else b""
        _last_second = (seconds, stamp)
    if nanos:
        stamp += b"\x10" + varint(nanos)
    parts += (_EVENT_CREATED, varint(len(stamp)), stamp)
    return b"".join(parts)

"""Hand-built protobuf frames for the publish hot path.

Building an ``EventWrapper`` and a ``PublisherRequest`` message object per event costs
more than the event itself; the wire encoding of these few length-delimited fields is
fixed by the schema, so the publisher concatenates bytes instead. A unit test checks
the frames against the generated classes.
"""

from __future__ import annotations

from collections.abc import Iterable

# (field number << 3) | 2 (length-delimited), as varints.
_WRAPPER_TOPIC_ID = b"\x12"  # EventWrapper.topic_id = 2
_WRAPPER_EVENT = b"\x4a"  # EventWrapper.event = 9
_WRAPPER_LOCAL_ID = b"\x82\x01"  # EventWrapper.local_id = 16
_REQUEST_EVENT = b"\x0a"  # PublisherRequest.event = 1
_REQUEST_EVENTS = b"\xa2\x06"  # PublisherRequest.events = 100 (EventBatch)
_BATCH_EVENT = b"\x0a"  # EventBatch.events = 1


def varint(value: int) -> bytes:
    """Protobuf base-128 varint of a non-negative int."""
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def wrapper(topic_id: bytes, event: bytes, local_id: bytes) -> bytes:
    """A serialized ``EventWrapper`` carrying only what a publisher sends."""
    return b"".join(
        (
            _WRAPPER_TOPIC_ID,
            varint(len(topic_id)),
            topic_id,
            _WRAPPER_EVENT,
            varint(len(event)),
            event,
            _WRAPPER_LOCAL_ID,
            varint(len(local_id)),
            local_id,
        )
    )


def single_request(wrapped: bytes) -> bytes:
    """A serialized ``PublisherRequest{event}``."""
    return _REQUEST_EVENT + varint(len(wrapped)) + wrapped


def batch_item_size(wrapped: bytes) -> int:
    """Bytes one wrapper adds to an ``EventBatch``."""
    return 1 + len(varint(len(wrapped))) + len(wrapped)


def batch_request(wrapped: Iterable[bytes]) -> bytes:
    """A serialized ``PublisherRequest{events: EventBatch{events}}``."""
    parts: list[bytes] = []
    for item in wrapped:
        parts.append(_BATCH_EVENT)
        parts.append(varint(len(item)))
        parts.append(item)
    batch = b"".join(parts)
    return _REQUEST_EVENTS + varint(len(batch)) + batch

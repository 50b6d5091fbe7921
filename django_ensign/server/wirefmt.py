"""Hand-written protobuf encodings for the few hot-path messages.

Building these bytes directly avoids a protobuf object per event on the publish and
subscribe paths; the layouts follow SCHEMA.md field numbers.
"""

from __future__ import annotations

import operator
from itertools import repeat

from django_ensign.wire.protowire import varint


def field_bytes(number: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return varint((number << 3) | 2) + varint(len(payload)) + payload


def field_varint(number: int, value: int) -> bytes:
    """A varint field (omitted when zero, as proto3 does)."""
    if not value:
        return b""
    return varint(number << 3) + varint(value)


def timestamp(ns: int) -> bytes:
    """A google.protobuf.Timestamp body for Unix nanoseconds."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    return field_varint(1, seconds) + field_varint(2, nanos)


def timestamp_explicit(ns: int) -> bytes:
    """A Timestamp body with both fields present even when zero.

    Appended after a client's bytes, explicit fields replace whatever the client sent
    (protobuf merges repeated occurrences of a message field).
    """
    seconds, nanos = divmod(ns, 1_000_000_000)
    return b"\x08" + varint(seconds) + b"\x10" + varint(nanos)


def offset_field(offset: int) -> bytes:
    """EventWrapper ``offset`` (3); the writer needs one per row, so small ones are unrolled."""
    if offset < 0x80:
        return bytes((0x18, offset))
    if offset < 0x4000:
        return bytes((0x18, (offset & 0x7F) | 0x80, offset >> 7))
    if offset < 0x200000:
        return bytes((0x18, (offset & 0x7F) | 0x80, ((offset >> 7) & 0x7F) | 0x80, offset >> 14))
    return b"\x18" + varint(offset)


#: ``offset`` field heads for each value of an offset's low seven bits: the whole field
#: when the offset is below 128, else its tag and first varint byte.
_ONE_BYTE = [bytes((0x18, low)) for low in range(0x80)]
_MORE_BYTES = [bytes((0x18, low | 0x80)) for low in range(0x80)]


def offset_fields(start: int, count: int) -> list[bytes]:
    """``offset_field`` of ``count`` consecutive offsets from ``start``.

    Offsets that differ only in their low seven bits share the rest of their varint, so
    a block of 128 takes one concatenation in C instead of a Python call per offset.
    """
    fields: list[bytes] = []
    offset, end = start, start + count
    while offset < end:
        high = offset >> 7
        stop = min(end - (high << 7), 0x80)
        if high:
            fields += map(operator.add, _MORE_BYTES[offset & 0x7F : stop], repeat(varint(high)))
        else:
            fields += _ONE_BYTE[offset:stop]
        offset = (high + 1) << 7
    return fields


def committed_suffix(offset: int, committed_ns: int) -> bytes:
    """EventWrapper fields ``offset`` (3) and ``committed`` (15), appended to a wrapper."""
    return field_varint(3, offset) + field_bytes(15, timestamp(committed_ns))


def duplicate_suffix(duplicate_id: bytes) -> bytes:
    """EventWrapper fields ``is_duplicate`` (12) and ``duplicate_id`` (13)."""
    return field_varint(12, 1) + field_bytes(13, duplicate_id)


def ack_body(local_id: bytes, committed_ns: int) -> bytes:
    """An Ack message body."""
    return field_bytes(1, local_id) + field_bytes(2, timestamp(committed_ns))


def ack_entries(local_ids: list[bytes], committed_ns: int, number: int) -> bytes:
    """Field ``number`` repeated: one Ack per local id, all with the same commit time."""
    if not local_ids:
        return b""
    stamp = field_bytes(2, timestamp(committed_ns))
    tag = varint((number << 3) | 2)
    size = len(local_ids[0])
    if size < 128 and len(set(map(len, local_ids))) == 1:
        # Every entry is head + local id + stamp with the same head: one join builds them.
        head = tag + varint(2 + size + len(stamp)) + bytes((10, size))
        return head + (stamp + head).join(local_ids) + stamp
    out = []
    for local_id in local_ids:
        body = field_bytes(1, local_id) + stamp
        out.append(tag + varint(len(body)) + body)
    return b"".join(out)


def publisher_ack(local_id: bytes, committed_ns: int) -> bytes:
    """A PublisherReply holding an Ack."""
    return field_bytes(1, ack_body(local_id, committed_ns))


def subscribe_event(wrapper: bytes) -> bytes:
    """A SubscribeReply holding one EventWrapper."""
    return field_bytes(1, wrapper)


def subscribe_batch(wrappers: list[bytes]) -> bytes:
    """A SubscribeReply holding an EventBatch of wrappers."""
    batch = b"".join([field_bytes(1, w) for w in wrappers])
    return field_bytes(100, batch)

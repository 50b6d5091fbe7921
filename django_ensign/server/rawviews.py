"""Views of publish requests that protobuf builds in C, without one Python object per event.

A private descriptor pool declares two messages with EventBatch's wire format:
``RawBatch`` keeps every EventWrapper as the bytes the client sent, so they can be stored
without re-serializing them; ``OwnedBatch`` declares only the wrapper fields the server
owns (proto2, so a field is present when it is on the wire), so after dropping unknown
fields its size tells whether any client set one of them.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_PACKAGE = "django_ensign_server_rawviews"
_Field = descriptor_pb2.FieldDescriptorProto

#: EventWrapper fields the server sets itself: offset, epoch, publisher, is_duplicate,
#: duplicate_id, committed (wire-compatible types; messages are declared as bytes).
_OWNED = (
    ("offset", 3, _Field.TYPE_UINT64),
    ("epoch", 4, _Field.TYPE_UINT64),
    ("publisher", 6, _Field.TYPE_BYTES),
    ("is_duplicate", 12, _Field.TYPE_BOOL),
    ("duplicate_id", 13, _Field.TYPE_BYTES),
    ("committed", 15, _Field.TYPE_BYTES),
)


def _messages() -> dict[str, Any]:
    proto = descriptor_pb2.FileDescriptorProto(
        name=f"{_PACKAGE}.proto", package=_PACKAGE, syntax="proto2"
    )
    raw = proto.message_type.add(name="RawBatch")
    raw.field.add(name="events", number=1, type=_Field.TYPE_BYTES, label=_Field.LABEL_REPEATED)
    owned = proto.message_type.add(name="Owned")
    for name, number, kind in _OWNED:
        owned.field.add(name=name, number=number, type=kind, label=_Field.LABEL_OPTIONAL)
    batch = proto.message_type.add(name="OwnedBatch")
    batch.field.add(
        name="events",
        number=1,
        type=_Field.TYPE_MESSAGE,
        label=_Field.LABEL_REPEATED,
        type_name=f".{_PACKAGE}.Owned",
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}"))
        for name in ("RawBatch", "Owned", "OwnedBatch")
    }


_CLASSES = _messages()
_RawBatch = _CLASSES["RawBatch"]
_Owned = _CLASSES["Owned"]
_OwnedBatch = _CLASSES["OwnedBatch"]

#: PublisherRequest tags: ``event`` (1) and ``events`` (100), both length-delimited.
EVENT_TAG = b"\x0a"
EVENTS_TAG = b"\xa2\x06"


def sole_field(raw: bytes, tag: bytes) -> bytes | None:
    """The payload of ``raw`` if it is exactly one ``tag`` field and nothing else.

    Only then are the payload's bytes the message protobuf parsed: a field sent twice
    is merged, which a byte slice would not reproduce.
    """
    if not raw.startswith(tag):
        return None
    pos, length, shift = len(tag), 0, 0
    end = min(len(raw), pos + 5)
    while pos < end:
        byte = raw[pos]
        pos += 1
        length |= (byte & 0x7F) << shift
        if byte < 0x80:
            return raw[pos:] if pos + length == len(raw) else None
        shift += 7
    return None


def batch_wrappers(body: bytes) -> list[bytes]:
    """The serialized EventWrappers of an EventBatch body, as sent, in order."""
    return list(_RawBatch.FromString(body).events)


def batch_sets_owned(body: bytes, count: int) -> bool:
    """Whether any of the ``count`` wrappers of an EventBatch body carries a server field."""
    owned = _OwnedBatch.FromString(body)
    owned.DiscardUnknownFields()
    # Each wrapper without owned fields is an empty element: a tag and a zero length.
    return bool(owned.ByteSize() != 2 * count)


def wrapper_sets_owned(wrapper: bytes) -> bool:
    """Whether a serialized EventWrapper carries a field the server sets."""
    owned = _Owned.FromString(wrapper)
    owned.DiscardUnknownFields()
    return bool(owned.ByteSize())

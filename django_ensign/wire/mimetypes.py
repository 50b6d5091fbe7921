"""Mimetype names and their ``mimetype.v1beta1.MIME`` enum values (PROTOCOL.md §1)."""

from __future__ import annotations

import contextlib

from django_ensign.proto.mimetype.v1beta1 import mimetype_pb2

MIME = mimetype_pb2.MIME

#: Canonical IANA name of each enum value.
NAMES: dict[int, str] = {
    0: "application/octet-stream",
    1: "text/plain",
    2: "text/csv",
    3: "text/html",
    4: "text/calendar",
    50: "application/json",
    51: "application/ld+json",
    52: "application/jsonlines",
    53: "application/ubjson",
    54: "application/bson",
    100: "application/xml",
    101: "application/atom+xml",
    252: "application/msgpack",
    253: "application/parquet",
    254: "application/avro",
    255: "application/protobuf",
    512: "application/pdf",
    513: "application/java-archive",
    514: "application/python-pickle",
    **{1000 + n: f"user/format-{n}" for n in range(10)},
}

_VALUES: dict[str, int] = {name: value for value, name in NAMES.items()}
# Names other SDKs and registries also use for the same formats.
_VALUES.update(
    {
        "application/x-ndjson": 52,
        "application/x-msgpack": 252,
        "application/vnd.apache.parquet": 253,
        "application/x-protobuf": 255,
        "application/x-pickle": 514,
        "unknown": 0,
        "unspecified": 0,
    }
)
# Structured-syntax suffixes (RFC 6839) of vendor types map to their base type.
_SUFFIXES = {"json": 50, "xml": 100, "msgpack": 252, "protobuf": 255, "avro": 254}


class UnknownMimetype(ValueError):
    """A mimetype string that has no Ensign enum value."""


def parse(mimetype: str | int) -> int:
    """Return the enum value for a mimetype string, enum name or number.

    ``"application/json; charset=utf-8"`` and ``"application/vnd.acme.reading+json"``
    both map to APPLICATION_JSON. Raises :class:`UnknownMimetype` otherwise.
    """
    if isinstance(mimetype, bool):
        raise UnknownMimetype(f"unknown mimetype {mimetype!r}")
    if isinstance(mimetype, int):
        if mimetype in NAMES:
            return mimetype
        raise UnknownMimetype(f"unknown mimetype value {mimetype}")
    text = mimetype.split(";", 1)[0].strip().lower()
    if text in _VALUES:
        return _VALUES[text]
    with contextlib.suppress(ValueError):
        return int(MIME.Value(text.upper()))  # an enum name such as "APPLICATION_JSON"
    if "/" in text and "+" in text:
        suffix = text.rsplit("+", 1)[1]
        if suffix in _SUFFIXES:
            return _SUFFIXES[suffix]
    raise UnknownMimetype(f"unknown mimetype {mimetype!r}")


def name(value: int) -> str:
    """Canonical name of an enum value; values without one render as ``mimetype/<n>``."""
    return NAMES.get(value, f"mimetype/{value}")

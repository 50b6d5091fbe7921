"""Protobuf wire primitives shared by the SDK's and the server's hand-built encodings."""

from __future__ import annotations


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# Lengths, tags and small numbers (every field length of an ordinary event) are cached
# once encoded: a frame needs a dozen varints, and building each byte by byte costs more
# than the rest of the frame.
_SMALL_LIMIT = 1 << 14
_small: list[bytes | None] = [None] * _SMALL_LIMIT


def varint(value: int) -> bytes:
    """Protobuf base-128 varint of a non-negative integer."""
    if 0 <= value < _SMALL_LIMIT:
        encoded = _small[value]
        if encoded is None:
            encoded = _small[value] = _encode_varint(value)
        return encoded
    if value < 0:
        raise ValueError(f"varint of a negative number: {value}")
    # Three to five bytes (an event's nanoseconds, a stored event's offset) are spelled
    # out: the byte-by-byte loop takes about 40 % longer.
    if value < 1 << 21:
        return bytes((value & 0x7F | 0x80, value >> 7 & 0x7F | 0x80, value >> 14))
    if value < 1 << 28:
        return bytes(
            (value & 0x7F | 0x80, value >> 7 & 0x7F | 0x80, value >> 14 & 0x7F | 0x80, value >> 21)
        )
    if value < 1 << 35:
        return bytes(
            (
                value & 0x7F | 0x80,
                value >> 7 & 0x7F | 0x80,
                value >> 14 & 0x7F | 0x80,
                value >> 21 & 0x7F | 0x80,
                value >> 28,
            )
        )
    return _encode_varint(value)

"""The topic-name hash of the Ensign wire: murmur3 x64 128-bit of the UTF-8 name (PROTOCOL.md §1).

Byte order matches Go's ``twmb/murmur3`` ``Sum128``: h1 big-endian, then h2 big-endian.
The string form is base64url without padding (22 characters).
"""

from __future__ import annotations

import base64

_MASK = (1 << 64) - 1
_C1 = 0x87C37B91114253D5
_C2 = 0x4CF5AD432745937F


def _rotl(value: int, bits: int) -> int:
    return ((value << bits) | (value >> (64 - bits))) & _MASK


def _fmix(value: int) -> int:
    value ^= value >> 33
    value = (value * 0xFF51AFD7ED558CCD) & _MASK
    value ^= value >> 33
    value = (value * 0xC4CEB9FE1A85EC53) & _MASK
    value ^= value >> 33
    return value


def murmur3_128(data: bytes, seed: int = 0) -> tuple[int, int]:
    """The two 64-bit halves (h1, h2) of murmur3 x64 128 of ``data``."""
    h1 = h2 = seed & _MASK
    length = len(data)
    full = length - length % 16
    for pos in range(0, full, 16):
        k1 = int.from_bytes(data[pos : pos + 8], "little")
        k2 = int.from_bytes(data[pos + 8 : pos + 16], "little")
        k1 = (_rotl((k1 * _C1) & _MASK, 31) * _C2) & _MASK
        h1 ^= k1
        h1 = (_rotl(h1, 27) + h2) & _MASK
        h1 = (h1 * 5 + 0x52DCE729) & _MASK
        k2 = (_rotl((k2 * _C2) & _MASK, 33) * _C1) & _MASK
        h2 ^= k2
        h2 = (_rotl(h2, 31) + h1) & _MASK
        h2 = (h2 * 5 + 0x38495AB5) & _MASK
    tail = data[full:]
    if len(tail) > 8:
        k2 = int.from_bytes(tail[8:], "little")
        k2 = (_rotl((k2 * _C2) & _MASK, 33) * _C1) & _MASK
        h2 ^= k2
    if tail:
        k1 = int.from_bytes(tail[:8], "little")
        k1 = (_rotl((k1 * _C1) & _MASK, 31) * _C2) & _MASK
        h1 ^= k1
    h1 ^= length
    h2 ^= length
    h1 = (h1 + h2) & _MASK
    h2 = (h2 + h1) & _MASK
    h1 = _fmix(h1)
    h2 = _fmix(h2)
    h1 = (h1 + h2) & _MASK
    h2 = (h2 + h1) & _MASK
    return h1, h2


def topic_hash(name: str) -> bytes:
    """The 16-byte hash of a topic name."""
    h1, h2 = murmur3_128(name.encode("utf-8"))
    return h1.to_bytes(8, "big") + h2.to_bytes(8, "big")


def topic_hash_str(name: str) -> str:
    """The hash of a topic name as base64url without padding (22 characters)."""
    return base64.urlsafe_b64encode(topic_hash(name)).rstrip(b"=").decode("ascii")


def decode_hash_str(text: str) -> bytes | None:
    """The 16 bytes of a base64url name hash, or None if ``text`` is not one."""
    if len(text) != 22:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "==")
    except (ValueError, TypeError):
        return None
    return raw if len(raw) == 16 else None

"""Identifiers on the Ensign wire: 16-byte ULIDs and 10-byte RLIDs (PROTOCOL.md §1)."""

from __future__ import annotations

import os
import threading
import time

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
RLID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_CROCKFORD_INDEX = {c: i for i, c in enumerate(CROCKFORD)}
_CROCKFORD_INDEX.update({c.lower(): i for i, c in enumerate(CROCKFORD)})

ULID_BYTES = 16
ULID_TEXT = 26
RLID_BYTES = 10

# A ULID's 26 characters split at a character boundary: 10 for the 48-bit time (two
# leading zero bits) and 16 for the 80 random bits, eight pairs of characters of 10 bits.
_PAIRS = [high + low for high in CROCKFORD for low in CROCKFORD]
_time_text = threading.local()


def new_ulid(ms: int | None = None) -> bytes:
    """A new 16-byte ULID: 48-bit Unix milliseconds then 80 random bits."""
    if ms is None:
        ms = time.time_ns() // 1_000_000
    return ms.to_bytes(6, "big") + os.urandom(10)


def _time_chars(ms: int) -> str:
    return "".join(CROCKFORD[(ms >> shift) & 31] for shift in range(45, -1, -5))


def _random_chars(raw: bytes) -> str:
    # Unrolled: the outbox makes one for every row a published save writes.
    bits = int.from_bytes(raw, "big")
    pairs = _PAIRS
    return (
        pairs[bits >> 70]
        + pairs[(bits >> 60) & 1023]
        + pairs[(bits >> 50) & 1023]
        + pairs[(bits >> 40) & 1023]
        + pairs[(bits >> 30) & 1023]
        + pairs[(bits >> 20) & 1023]
        + pairs[(bits >> 10) & 1023]
        + pairs[bits & 1023]
    )


def ulid_to_str(raw: bytes) -> str:
    """Encode 16 ULID bytes as 26 upper-case Crockford base32 characters."""
    if len(raw) != ULID_BYTES:
        raise ValueError(f"a ULID is {ULID_BYTES} bytes, got {len(raw)}")
    return _time_chars(int.from_bytes(raw[:6], "big")) + _random_chars(raw[6:])


def new_ulid_str() -> str:
    """``ulid_to_str(new_ulid())``, cheaper: the outbox makes one for every row it writes."""
    ms = time.time_ns() // 1_000_000
    # Calls within one millisecond share the time characters (per thread, so no lock).
    cached = getattr(_time_text, "value", None)
    if cached is None or cached[0] != ms:
        cached = _time_text.value = (ms, _time_chars(ms))
    return cached[1] + _random_chars(os.urandom(10))


def ulid_from_str(text: str) -> bytes:
    """Decode a 26-character ULID string (either case); ValueError if malformed."""
    if len(text) != ULID_TEXT:
        raise ValueError(f"a ULID string is {ULID_TEXT} characters, got {len(text)}")
    value = 0
    for char in text:
        try:
            value = (value << 5) | _CROCKFORD_INDEX[char]
        except KeyError:
            raise ValueError(f"invalid ULID character {char!r}") from None
    if value >> 128:
        raise ValueError("ULID overflows 128 bits")
    return value.to_bytes(ULID_BYTES, "big")


def is_ulid_str(text: str) -> bool:
    """Whether ``text`` parses as a ULID string."""
    try:
        ulid_from_str(text)
    except ValueError:
        return False
    return True


def ulid_time_ms(raw: bytes) -> int:
    """The Unix milliseconds in a ULID."""
    return int.from_bytes(raw[:6], "big")


class RLIDSequence:
    """Generates monotonically increasing RLIDs: 48-bit ms then a 32-bit sequence."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ms = 0
        self._seq = 0

    def next(self) -> bytes:
        with self._lock:
            ms = time.time_ns() // 1_000_000
            if ms > self._ms:
                self._ms, self._seq = ms, 0
            else:
                self._seq += 1
                if self._seq >= 1 << 32:
                    self._ms, self._seq = self._ms + 1, 0
            return self._ms.to_bytes(6, "big") + self._seq.to_bytes(4, "big")


def rlid_to_str(raw: bytes) -> str:
    """Encode a 10-byte RLID as 16 characters of the lower-case RLID alphabet."""
    if len(raw) != RLID_BYTES:
        raise ValueError(f"an RLID is {RLID_BYTES} bytes, got {len(raw)}")
    value = int.from_bytes(raw, "big")
    return "".join(RLID_ALPHABET[(value >> shift) & 31] for shift in range(75, -1, -5))


def rlid_from_str(text: str) -> bytes:
    """Decode a 16-character RLID string; ValueError if malformed."""
    if len(text) != 16:
        raise ValueError(f"an RLID string is 16 characters, got {len(text)}")
    value = 0
    for char in text.lower():
        index = RLID_ALPHABET.find(char)
        if index < 0:
            raise ValueError(f"invalid RLID character {char!r}")
        value = (value << 5) | index
    return value.to_bytes(RLID_BYTES, "big")

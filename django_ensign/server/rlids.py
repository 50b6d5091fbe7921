"""Event ids: 10-byte RLIDs (48-bit Unix ms, 32-bit sequence) handed out in blocks.

Used only from the event loop, so no lock; a batch of events costs one clock read.
"""

from __future__ import annotations

import struct
import time

_SEQ = struct.Struct(">I")


class RlidAllocator:
    """Monotonically increasing RLIDs."""

    def __init__(self) -> None:
        self._ms = 0
        self._seq = 0

    def take_one(self) -> bytes:
        """One new id (``take(1)`` without the list)."""
        ms = time.time_ns() // 1_000_000
        if ms > self._ms:
            self._ms, self._seq = ms, 0
        if self._seq >= 0xFFFFFFFF:
            self._ms, self._seq = self._ms + 1, 0
        seq = self._seq
        self._seq = seq + 1
        return self._ms.to_bytes(6, "big") + seq.to_bytes(4, "big")

    def take(self, count: int) -> list[bytes]:
        """``count`` new ids, in increasing order."""
        ms = time.time_ns() // 1_000_000
        if ms > self._ms:
            self._ms, self._seq = ms, 0
        if self._seq + count > 0xFFFFFFFF:
            self._ms, self._seq = self._ms + 1, 0
        prefix = self._ms.to_bytes(6, "big")
        start = self._seq
        self._seq += count
        return list(map(prefix.__add__, map(_SEQ.pack, range(start, start + count))))

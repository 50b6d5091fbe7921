"""ULID text: the fast encoders agree with the bit-by-bit definition and round-trip."""

from __future__ import annotations

import os
import time

from django_ensign.wire import ids


def _by_definition(raw: bytes) -> str:
    value = int.from_bytes(raw, "big")
    return "".join(ids.CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def test_ulid_text_matches_the_definition_for_edge_and_random_values() -> None:
    samples = [bytes(16), b"\xff" * 16, b"\x00" * 6 + b"\xff" * 10, b"\xff" * 6 + bytes(10)]
    samples += [os.urandom(16) for _ in range(2000)]
    for raw in samples:
        text = ids.ulid_to_str(raw)
        assert text == _by_definition(raw)
        assert ids.ulid_from_str(text) == raw


def test_new_ulid_text_carries_the_current_time_and_fresh_randomness() -> None:
    before = time.time_ns() // 1_000_000
    made = [ids.new_ulid_str() for _ in range(500)]
    after = time.time_ns() // 1_000_000
    assert len(set(made)) == len(made)
    for text in made:
        assert len(text) == ids.ULID_TEXT
        assert before <= ids.ulid_time_ms(ids.ulid_from_str(text)) <= after
    # Text order is time order: an id never sorts before one from an earlier millisecond.
    times = [ids.ulid_time_ms(ids.ulid_from_str(t)) for t in sorted(made)]
    assert times == sorted(times)

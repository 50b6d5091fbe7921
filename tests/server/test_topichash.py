"""The murmur3 topic-name hash matches the reference implementation's vectors."""

from __future__ import annotations

from django_ensign.wire.topichash import decode_hash_str, murmur3_128, topic_hash, topic_hash_str


def test_reference_vectors() -> None:
    # Known murmur3 x64 128 outputs (seed 0) as (h1, h2).
    assert murmur3_128(b"") == (0, 0)
    assert murmur3_128(b"hello") == (0xCBD8A7B341BD9B02, 0x5B1E906A48AE1D19)
    assert topic_hash("The quick brown fox jumps over the lazy dog").hex() == (
        "e34bbc7bbc071b6c7a433ca9c49a9347"
    )


def test_every_tail_length_differs() -> None:
    hashes = {topic_hash("x" * n) for n in range(40)}
    assert len(hashes) == 40


def test_string_form_is_22_char_base64url_and_round_trips() -> None:
    text = topic_hash_str("weather")
    assert len(text) == 22
    assert "=" not in text
    assert decode_hash_str(text) == topic_hash("weather")
    assert decode_hash_str("weather") is None
    assert decode_hash_str("!" * 22) is None

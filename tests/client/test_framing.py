"""The hand-built publish frames equal what the generated classes produce."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from django_ensign.client import framing
from django_ensign.proto.api.v1beta1 import ensign_pb2, event_pb2


@given(
    topic_id=st.binary(min_size=16, max_size=16),
    event=st.binary(max_size=3000),
    local_id=st.binary(min_size=16, max_size=16),
)
def test_event_frame_parses_as_publisher_request(
    topic_id: bytes, event: bytes, local_id: bytes
) -> None:
    request = ensign_pb2.PublisherRequest.FromString(framing.event_frame(topic_id, event, local_id))
    assert request.WhichOneof("embed") == "event"
    assert (request.event.topic_id, request.event.event, request.event.local_id) == (
        topic_id,
        event,
        local_id,
    )


@given(
    topic_id=st.binary(min_size=1, max_size=200),
    event=st.binary(min_size=1, max_size=20000),
    local_id=st.binary(min_size=1, max_size=200),
)
def test_event_frame_is_the_generated_request_byte_for_byte(
    topic_id: bytes, event: bytes, local_id: bytes
) -> None:
    # Lengths of one to three varint bytes; empty fields are left out by protobuf.
    wrapper = event_pb2.EventWrapper(topic_id=topic_id, event=event, local_id=local_id)
    expected = ensign_pb2.PublisherRequest(event=wrapper).SerializeToString()
    assert framing.event_frame(topic_id, event, local_id) == expected


@given(events=st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=40))
def test_event_frames_join_into_a_batch_frame(events: list[bytes]) -> None:
    ids = [i.to_bytes(16, "big") for i in range(len(events))]
    frames = [framing.event_frame(b"t" * 16, e, i) for e, i in zip(events, ids, strict=True)]
    request = ensign_pb2.PublisherRequest.FromString(framing.batch_request(frames))
    assert request.WhichOneof("embed") == "events"
    assert [w.event for w in request.events.events] == events
    wrappers = [
        event_pb2.EventWrapper(topic_id=b"t" * 16, event=e, local_id=i)
        for e, i in zip(events, ids, strict=True)
    ]
    expected = ensign_pb2.PublisherRequest(events=ensign_pb2.EventBatch(events=wrappers))
    assert len(framing.batch_request(frames)) == expected.ByteSize()
    # What the publisher counts against the server's max_bytes.
    assert sum(len(frame) for frame in frames) == expected.events.ByteSize()


@given(value=st.integers(min_value=1, max_value=2**63))
def test_varint_matches_protobuf(value: int) -> None:
    assert framing.varint(value) == event_pb2.EventWrapper(offset=value).SerializeToString()[1:]


@pytest.mark.parametrize("width", range(1, 10))
def test_varint_matches_protobuf_at_each_byte_width_boundary(width: int) -> None:
    for value in (2 ** (7 * width) - 1, 2 ** (7 * width), 2 ** (7 * width) + 1):
        expected = event_pb2.EventWrapper(offset=value).SerializeToString()[1:]
        assert framing.varint(value) == expected, value


@given(
    data=st.binary(min_size=1, max_size=500),
    meta=st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=5),
    mimetype=st.sampled_from([0, 1, 50, 252, 1009]),
    name=st.text(min_size=1, max_size=30).filter(str.strip),
    version=st.tuples(*(st.integers(0, 2**31) for _ in range(3))),
    created_ns=st.integers(0, 2**62),
)
def test_event_payload_parses_as_event(
    data: bytes,
    meta: dict[str, str],
    mimetype: int,
    name: str,
    version: tuple[int, int, int],
    created_ns: int,
) -> None:
    raw = framing.event(data, meta, mimetype, framing.event_type(name, version), created_ns)
    parsed = event_pb2.Event.FromString(raw)
    assert parsed.data == data
    assert dict(parsed.metadata) == meta
    assert parsed.mimetype == mimetype
    assert parsed.type.name == name
    assert (parsed.type.major_version, parsed.type.minor_version, parsed.type.patch_version) == (
        version
    )
    assert parsed.created.seconds * 1_000_000_000 + parsed.created.nanos == created_ns


def test_events_of_the_same_second_keep_their_own_times_and_metadata() -> None:
    second = 1_700_000_000 * 1_000_000_000
    frames = [
        framing.event(b"x", {"k": f"v{n}"}, 1, framing.event_type("T", (1, 0, 0)), second + n)
        for n in (0, 5, 999_999_999)
    ]
    parsed = [event_pb2.Event.FromString(raw) for raw in frames]
    assert [(p.created.seconds, p.created.nanos) for p in parsed] == [
        (1_700_000_000, 0),
        (1_700_000_000, 5),
        (1_700_000_000, 999_999_999),
    ]
    assert [dict(p.metadata) for p in parsed] == [{"k": "v0"}, {"k": "v5"}, {"k": "v999999999"}]

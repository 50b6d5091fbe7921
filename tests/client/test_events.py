"""Events, outcomes and received events, without a network."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from django_ensign.client import (
    Ack,
    Event,
    EventState,
    Nack,
    NackCode,
    ReceivedEvent,
    exceptions,
    framing,
)
from django_ensign.client.events import encode_event
from django_ensign.proto.api.v1beta1 import event_pb2


def test_event_keeps_data_mimetype_schema_and_meta() -> None:
    event = Event(
        b'{"temp": 72}',
        "application/json; charset=utf-8",
        schema_name="Reading",
        schema_version="1.2.0",
        meta={"k": "v"},
    )
    proto = event_pb2.Event.FromString(event.serialize())
    assert proto.data == b'{"temp": 72}'
    assert proto.mimetype == 50
    assert (proto.type.name, proto.type.major_version, proto.type.minor_version) == (
        "Reading",
        1,
        2,
    )
    assert dict(proto.metadata) == {"k": "v"}
    assert proto.created.seconds > 0
    assert event.mimetype_name == "application/json"
    assert event.state == EventState.INITIALIZED
    assert not event.published()
    assert not event.acked()
    assert not event.nacked()


@pytest.mark.parametrize(
    ("mimetype", "value"),
    [
        ("text/plain", 1),
        ("application/vnd.acme.reading+json", 50),
        ("APPLICATION_MSGPACK", 252),
        (514, 514),
    ],
)
def test_mimetype_strings_names_and_numbers(mimetype: str | int, value: int) -> None:
    assert Event(b"x", mimetype).mimetype == value


def test_unknown_mimetype_string_is_a_clear_error() -> None:
    with pytest.raises(exceptions.UnknownMimetypeError, match="application/x-nope"):
        Event(b"x", "application/x-nope")


def test_non_bytes_data_is_a_type_error_under_the_root() -> None:
    with pytest.raises(exceptions.EventDataTypeError) as info:
        Event("text", "text/plain")  # type: ignore[arg-type]
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, exceptions.EnsignError)


def test_an_event_too_big_for_one_publish_message_is_refused() -> None:
    limit = framing.MAX_EVENT_PAYLOAD_BYTES
    Event(b"x" * (limit - 10), "text/plain", meta={"k": "v" * 9})
    with pytest.raises(exceptions.InvalidEvent, match="more than one publish message can carry"):
        Event(b"x" * (limit - 10), "text/plain", meta={"k": "v" * 10})


def test_empty_data_and_bad_version_are_rejected() -> None:
    with pytest.raises(exceptions.InvalidEvent):
        Event(b"", "text/plain")
    with pytest.raises(exceptions.InvalidEvent, match="semantic version"):
        Event(b"x", "text/plain", schema_version="one")


def test_each_event_gets_its_own_16_byte_local_id() -> None:
    ids = {Event(b"x").local_id for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(len(i) == 16 for i in ids)


async def test_waiting_for_an_unpublished_event_is_an_error() -> None:
    with pytest.raises(exceptions.EnsignError, match="not published"):
        await Event(b"x").wait_for_ack()


def test_ack_exposes_timestamp_and_aware_datetime() -> None:
    committed = Timestamp(seconds=1_700_000_000, nanos=500_000_000)
    ack = Ack(b"id", committed)
    assert ack.committed.seconds == 1_700_000_000
    assert ack.committed_at == datetime(2023, 11, 14, 22, 13, 20, 500_000, tzinfo=UTC)


def test_nack_exposes_id_code_and_error() -> None:
    nack = Nack(b"id", NackCode.TOPIC_ARCHIVED, "topic is archived")
    assert (nack.id, nack.code, nack.error, nack.code_name) == (
        b"id",
        3,
        "topic is archived",
        "TOPIC_ARCHIVED",
    )


def _wrapper(event: bytes) -> event_pb2.EventWrapper:
    return event_pb2.EventWrapper(
        id=b"\x00" * 10,
        topic_id=b"\x01" * 16,
        event=event,
        offset=7,
        committed=Timestamp(seconds=5),
    )


def test_received_event_decodes_fields() -> None:
    payload = event_pb2.Event(
        data=b'{"a": 1}',
        mimetype=50,  # type: ignore[arg-type]
        metadata={"k": "v"},
        type=event_pb2.Type(name="Reading", major_version=1, minor_version=0, patch_version=2),
    ).SerializeToString()
    event = ReceivedEvent(_wrapper(payload), "weather")
    assert (event.topic, event.offset, event.data, event.meta) == (
        "weather",
        7,
        b'{"a": 1}',
        {"k": "v"},
    )
    assert (event.type_name, event.type_version, event.mimetype_name) == (
        "Reading",
        "1.0.2",
        "application/json",
    )
    assert event.committed_at == datetime(1970, 1, 1, 0, 0, 5, tzinfo=UTC)
    assert event.decode() == {"a": 1}
    assert event.decode_error is None


def test_undecodable_empty_and_unknown_mimetype_events_are_handed_over() -> None:
    garbage = ReceivedEvent(_wrapper(b"\xff\xff\xff"))
    assert garbage.data == b""
    assert garbage.raw == b"\xff\xff\xff"
    assert garbage.decode_error
    assert "undecodable" in garbage.decode_error
    empty = ReceivedEvent(_wrapper(b""))
    assert empty.decode_error == "empty event"
    odd = ReceivedEvent(_wrapper(event_pb2.Event(data=b"x", mimetype=777).SerializeToString()))  # type: ignore[arg-type]
    assert (odd.mimetype, odd.mimetype_name, odd.known_mimetype) == (777, "mimetype/777", False)


async def test_query_results_cannot_be_acked() -> None:
    with pytest.raises(exceptions.CouldNotAck):
        await ReceivedEvent(_wrapper(b"")).ack()


def test_an_encoded_event_is_the_event_it_stands_for() -> None:
    event = Event(b'{"a": 1}', "application/json", "Weather", "1.2.0", meta={"k": "v"})
    encoded = event_pb2.Event.FromString(
        encode_event(b'{"a": 1}', "application/json", "Weather", "1.2.0", {"k": "v"})
    )
    expected = event.proto()
    assert encoded.created.ToNanoseconds() >= expected.created.ToNanoseconds()
    encoded.ClearField("created")
    expected.ClearField("created")
    assert encoded == expected


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ((b"", "text/plain", "T", "1.0.0", {}), exceptions.InvalidEvent),
        (("text", "text/plain", "T", "1.0.0", {}), exceptions.EventDataTypeError),
        ((b"x", "application/x-nope", "T", "1.0.0", {}), exceptions.UnknownMimetypeError),
        ((b"x", "text/plain", " ", "1.0.0", {}), exceptions.InvalidEvent),
        ((b"x", "text/plain", "T", "one", {}), exceptions.InvalidEvent),
        ((b"x", "text/plain", "T", "1.0.0", {"k": 1}), exceptions.InvalidEvent),
        (
            (b"x" * framing.MAX_EVENT_PAYLOAD_BYTES, "text/plain", "T", "1.0.0", {"k": "v"}),
            exceptions.InvalidEvent,
        ),
    ],
    ids=["empty", "not-bytes", "mimetype", "schema-name", "version", "meta-value", "too-big"],
)
def test_encoding_refuses_what_an_event_refuses(
    fields: tuple[Any, ...], error: type[Exception]
) -> None:
    data, mimetype, name, version, meta = fields
    with pytest.raises(error):
        Event(data, mimetype, name, version, meta)
    with pytest.raises(error):
        encode_event(data, mimetype, name, version, meta)

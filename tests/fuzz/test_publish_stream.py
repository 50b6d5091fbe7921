"""Generated messages and raw bytes on the Publish stream (PROTOCOL.md §3).

Whatever arrives, the stream answers each event with exactly one Ack or a documented
Nack, ends with a documented status, and the server goes on acking ordinary events.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from django_ensign.proto.api.v1beta1 import ensign_pb2, event_pb2
from django_ensign.wire import ids
from tests.fuzz.conftest import FUZZ, PUBLISH_ENDINGS, PUBLISH_NACKS, FuzzTarget, Status
from tests.fuzz.strategies import known_refs, messages, topic_ids, topic_refs, undecodable

PublisherRequest = ensign_pb2.PublisherRequest


def open_stream() -> bytes:
    return PublisherRequest(open_stream=ensign_pb2.OpenStream(client_id="fuzz")).SerializeToString()


def wrappers(target: FuzzTarget) -> st.SearchStrategy[Any]:
    """EventWrappers with random fields, often aimed at a real topic."""
    return messages(
        event_pb2.EventWrapper,
        {
            "EventWrapper.topic_id": topic_ids(target.topic_ids),
            "EventWrapper.local_id": st.one_of(st.builds(ids.new_ulid), st.binary(max_size=20)),
        },
    )


def requests(target: FuzzTarget) -> st.SearchStrategy[Any]:
    """PublisherRequests of every kind: events, batches, open_stream again, empty."""
    wrapper = wrappers(target)
    return st.one_of(
        st.builds(lambda w: PublisherRequest(event=w), wrapper),
        st.builds(
            lambda ws: PublisherRequest(events=ensign_pb2.EventBatch(events=ws)),
            st.lists(wrapper, max_size=5),
        ),
        messages(
            PublisherRequest,
            {"OpenStream.topics": topic_refs(target.topic_names, target.topic_ids)},
        ),
    )


def expected_ending(sent: list[Any | None]) -> tuple[Status, str]:
    """The status PROTOCOL.md gives a stream that carried ``sent`` after open_stream.

    ``None`` stands for bytes that do not parse. The first message that ends the stream
    decides; events never do.
    """
    for request in sent:
        kind = None if request is None else request.WhichOneof("embed")
        if request is None:
            return Status.ABORTED, "could not recv event from client"
        if kind == "open_stream":
            return Status.ABORTED, "cannot send multiple open stream messages"
        if kind is None:
            return Status.FAILED_PRECONDITION, "unhandled publisher request message <nil>"
    return Status.OK, ""


def check_answer(sent: list[Any], code: Status, details: str, raw: list[bytes]) -> None:
    """The replies and status are what PROTOCOL.md allows for what was sent."""
    assert details in PUBLISH_ENDINGS.get(code, set()), (code, details)
    assert (code, details) == expected_ending(sent)
    replies = [ensign_pb2.PublisherReply.FromString(r) for r in raw]
    if not replies:
        return
    assert replies[0].WhichOneof("embed") == "ready"
    outcomes = 0
    for reply in replies[1:]:
        kind = reply.WhichOneof("embed")
        assert kind in {"ack", "nack", "replies", "close_stream"}, kind
        nacks = [reply.nack] if kind == "nack" else list(reply.replies.nacks)
        for nack in nacks:
            assert nack.error in PUBLISH_NACKS.get(nack.code, set()), (nack.code, nack.error)
        acks = [reply.ack] if kind == "ack" else list(reply.replies.acks)
        assert all(ack.committed.seconds > 0 for ack in acks)
        outcomes += len(acks) + len(nacks)
    if code == Status.OK:
        # A stream that ends well has answered every event it was sent, once.
        events = sum(
            1 if r.WhichOneof("embed") == "event" else len(r.events.events)
            for r in sent
            if r.WhichOneof("embed") in {"event", "events"}
        )
        assert outcomes == events
        close = replies[-1].close_stream
        assert replies[-1].WhichOneof("embed") == "close_stream"
        assert close.events == events
        assert close.acks + close.nacks == events


def parse(chunk: bytes) -> Any | None:
    try:
        return PublisherRequest.FromString(chunk)
    except Exception:
        return None


def test_generated_requests_after_open_stream_get_documented_answers(
    target: FuzzTarget,
) -> None:
    @FUZZ
    @given(st.lists(requests(target), min_size=1, max_size=6))
    def example(sent: list[Any]) -> None:
        raw = [open_stream(), *(r.SerializeToString() for r in sent)]
        code, details, replies = target.stream("Publish", raw)
        check_answer(sent, code, details, replies)

    example()
    target.assert_still_serving()


def test_generated_first_messages_get_documented_answers(target: FuzzTarget) -> None:
    @FUZZ
    @given(requests(target))
    def example(first: Any) -> None:
        code, details, replies = target.stream("Publish", [first.SerializeToString()])
        if first.WhichOneof("embed") == "open_stream":
            filters = set(first.open_stream.topics)
            if filters and not filters & set(known_refs(target.topic_names, target.topic_ids)):
                assert (code, details) == (Status.FAILED_PRECONDITION, "no topics available")
            else:
                check_answer([], code, details, replies)
        else:
            assert (code, details, replies) == (
                Status.FAILED_PRECONDITION,
                "an open stream message must be sent immediately after opening the stream",
                [],
            )

    example()
    target.assert_still_serving()


def test_raw_bytes_on_the_stream_get_documented_answers(target: FuzzTarget) -> None:
    @FUZZ
    @given(
        st.lists(
            st.one_of(st.binary(max_size=80), undecodable(PublisherRequest)), min_size=1, max_size=4
        )
    )
    def example(chunks: list[bytes]) -> None:
        code, details, raw = target.stream("Publish", [open_stream(), *chunks])
        check_answer([parse(chunk) for chunk in chunks], code, details, raw)

    example()
    target.assert_still_serving()

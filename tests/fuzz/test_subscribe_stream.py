"""Generated messages and raw bytes on the Subscribe stream (PROTOCOL.md §4).

Whatever the first message is, the stream either answers ``ready`` and then only events,
or ends with a documented status; what follows a good subscription (acks and nacks of
ids that were never delivered, noise, a second subscription) never breaks the server.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from django_ensign.proto.api.v1beta1 import ensign_pb2, groups_pb2, query_pb2
from tests.fuzz.conftest import FUZZ, SUBSCRIBE_ENDINGS, FuzzTarget, Status
from tests.fuzz.strategies import TEXT, ensql, messages, topic_refs, undecodable

SubscribeRequest = ensign_pb2.SubscribeRequest
SUBSCRIPTION_FIRST = "must send subscription to initialize stream"


def first_messages(target: FuzzTarget) -> st.SearchStrategy[Any]:
    """SubscribeRequests of any kind, with subscriptions that often name real topics."""
    queries = ensql(target.topic_names)
    return messages(
        SubscribeRequest,
        {
            "Subscription.topics": topic_refs(target.topic_names, target.topic_ids),
            "Subscription.query": st.builds(lambda q: query_pb2.Query(query=q), queries),
            "Subscription.batch_size": st.integers(0, 5000),
            "Subscription.window": st.integers(0, 5000),
            "ConsumerGroup.name": st.one_of(st.just("fuzz-group"), TEXT),
        },
    )


def check_answer(code: Status, details: str, raw: list[bytes]) -> list[Any]:
    """The status is documented; replies are ``ready`` and then events only."""
    pattern = SUBSCRIBE_ENDINGS.get(code)
    assert pattern is not None, (code, details)
    assert pattern.match(details), (code, details)
    replies = [ensign_pb2.SubscribeReply.FromString(r) for r in raw]
    if replies:
        assert replies[0].WhichOneof("embed") == "ready"
        assert {r.WhichOneof("embed") for r in replies[1:]} <= {"event", "events"}
    return replies


def test_generated_first_messages_get_documented_answers(target: FuzzTarget) -> None:
    @FUZZ
    @given(first_messages(target))
    def example(first: Any) -> None:
        code, details, raw = target.stream("Subscribe", [first.SerializeToString()])
        replies = check_answer(code, details, raw)
        if first.WhichOneof("embed") != "subscription":
            assert (code, details, raw) == (Status.FAILED_PRECONDITION, SUBSCRIPTION_FIRST, [])
        elif replies:
            offered = dict(replies[0].ready.topics)
            assert offered.items() <= target.project_topics().items()

    example()
    target.assert_still_serving()


def test_anything_after_a_good_subscription_leaves_the_server_serving(
    target: FuzzTarget,
) -> None:
    subscription = SubscribeRequest(
        subscription=ensign_pb2.Subscription(
            topics=target.topic_names[:1], group=groups_pb2.ConsumerGroup(name="fuzz-followers")
        )
    ).SerializeToString()

    @FUZZ
    @given(st.lists(st.one_of(messages(SubscribeRequest), st.binary(max_size=40)), max_size=5))
    def example(follow_ups: list[Any]) -> None:
        raw = [m if isinstance(m, bytes) else m.SerializeToString() for m in follow_ups]
        code, details, replies = target.stream("Subscribe", [subscription, *raw])
        # The client half-closes after its messages: the server ends the call, OK.
        assert (code, details) == (Status.OK, "")
        check_answer(code, details, replies)

    example()
    target.assert_still_serving()


def test_raw_first_messages_get_documented_answers(target: FuzzTarget) -> None:
    @FUZZ
    @given(st.one_of(st.binary(max_size=80), undecodable(SubscribeRequest)))
    def example(chunk: bytes) -> None:
        code, details, raw = target.stream("Subscribe", [chunk])
        check_answer(code, details, raw)
        try:
            parsed = SubscribeRequest.FromString(chunk)
        except Exception:
            assert (code, details) == (Status.ABORTED, "could not recv event from client")
            return
        if parsed.WhichOneof("embed") != "subscription":
            assert (code, details) == (Status.FAILED_PRECONDITION, SUBSCRIPTION_FIRST)

    example()
    target.assert_still_serving()

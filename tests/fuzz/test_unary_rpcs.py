"""Generated requests and raw bytes for every unary RPC (PROTOCOL.md §5).

A well-formed request with any field values gets OK or one of the documented error
statuses, never UNKNOWN or INTERNAL; the server keeps serving afterwards.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from django_ensign.proto.api.v1beta1 import ensign_pb2, query_pb2, topic_pb2
from django_ensign.wire import ids
from tests.fuzz.conftest import FUZZ, UNARY_STATUSES, FuzzTarget, Status
from tests.fuzz.strategies import TEXT, ensql, messages, topic_ids, undecodable

#: Every unary method and its request type.
METHODS: dict[str, type[Any]] = {
    "CreateTopic": topic_pb2.Topic,
    "RetrieveTopic": topic_pb2.Topic,
    "ListTopics": ensign_pb2.PageInfo,
    "TopicNames": ensign_pb2.PageInfo,
    "TopicExists": topic_pb2.TopicName,
    "DeleteTopic": topic_pb2.TopicMod,
    "SetTopicPolicy": topic_pb2.TopicPolicy,
    "Info": ensign_pb2.InfoRequest,
    "Status": ensign_pb2.HealthCheck,
    "Explain": query_pb2.Query,
}


def ulid_texts(real: list[bytes]) -> st.SearchStrategy[str]:
    """Topic ids as text: fresh ULIDs, noise, and (where harmless) real ones."""
    fresh = st.builds(lambda: ids.ulid_to_str(ids.new_ulid()))
    return st.one_of(fresh, TEXT, *(st.just(ids.ulid_to_str(i)) for i in real))


def requests(target: FuzzTarget, method: str) -> st.SearchStrategy[Any]:
    # DeleteTopic and SetTopicPolicy only ever see the second topic: the first one must
    # stay writable for the "still serving" check.
    spare = target.topic_ids[1:]
    hints: dict[str, st.SearchStrategy[Any]] = {
        "Topic.id": topic_ids(target.topic_ids),
        "Topic.name": st.one_of(st.sampled_from(target.topic_names), TEXT),
        "TopicName.topic_id": ulid_texts(target.topic_ids),
        "TopicName.name": st.one_of(st.sampled_from(target.topic_names), TEXT),
        "TopicMod.id": ulid_texts(spare),
        "TopicPolicy.id": ulid_texts(spare),
        "InfoRequest.topics": topic_ids(target.topic_ids),
        "PageInfo.page_size": st.integers(0, 6000),
        "Query.query": ensql(target.topic_names),
    }
    return messages(METHODS[method], hints)


@pytest.mark.parametrize("method", list(METHODS))
def test_generated_requests_get_documented_statuses(target: FuzzTarget, method: str) -> None:
    @FUZZ
    @given(requests(target, method))
    def example(request: Any) -> None:
        code, details, _ = target.unary(method, request.SerializeToString())
        assert code in UNARY_STATUSES, (code, details)

    example()
    target.assert_still_serving()


@pytest.mark.parametrize("method", list(METHODS))
def test_undecodable_requests_get_a_documented_status(target: FuzzTarget, method: str) -> None:
    # PROTOCOL.md documents no status for this; grpc-go (the real server) answers INTERNAL,
    # and grpcio's default (UNKNOWN naming a Python exception class) is not acceptable.
    @FUZZ
    @given(undecodable(METHODS[method]))
    def example(raw: bytes) -> None:
        code, details, _ = target.unary(method, raw)
        assert code in {Status.INVALID_ARGUMENT, Status.INTERNAL}, (code, details)
        assert "DecodeError" not in details

    example()
    target.assert_still_serving()


def test_undecodable_ensql_requests_get_a_documented_status(target: FuzzTarget) -> None:
    @FUZZ
    @given(undecodable(query_pb2.Query))
    def example(raw: bytes) -> None:
        code, details, replies = target.server_stream("EnSQL", raw)
        assert code in {Status.INVALID_ARGUMENT, Status.INTERNAL}, (code, details)
        assert "DecodeError" not in details
        assert replies == []

    example()
    target.assert_still_serving()

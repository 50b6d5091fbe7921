"""Random topic names thrown at the topic RPCs, checked against PROTOCOL.md §5's rules.

A name is valid when it matches ``^[a-zA-Z][a-zA-Z0-9.\\-_]*$`` as a whole (the real
server's Go regexp: ``$`` is the end of the text) and is at most 512 bytes long.
"""

from __future__ import annotations

import re
import uuid

from hypothesis import assume, given
from hypothesis import strategies as st

from django_ensign.proto.api.v1beta1 import ensign_pb2, topic_pb2
from tests.fuzz.conftest import FUZZ, FuzzTarget, Status
from tests.fuzz.strategies import TEXT

NAME = re.compile(r"[a-zA-Z][a-zA-Z0-9.\-_]*")
MAX_BYTES = 512

NAMES = st.one_of(
    TEXT,
    st.from_regex(NAME, fullmatch=True),
    st.from_regex(r"[a-zA-Z][a-zA-Z0-9.\-_]{500,520}", fullmatch=True),
    st.builds(lambda a, b: a + b, st.from_regex(NAME, fullmatch=True), TEXT),
    st.text("aZ09.-_ é\n\t/", max_size=12),
)


def expected(name: str) -> tuple[Status, str] | None:
    """The documented error for ``name``, or None if it is a valid name."""
    if not name:
        return Status.INVALID_ARGUMENT, "missing name field"
    if len(name.encode()) > MAX_BYTES:
        return Status.INVALID_ARGUMENT, "topic name is too long"
    if not NAME.fullmatch(name):
        return Status.INVALID_ARGUMENT, "topic name is invalid"
    return None


def test_create_topic_accepts_exactly_the_documented_names(target: FuzzTarget) -> None:
    created: set[str] = set(target.topic_names)

    @FUZZ
    @given(NAMES)
    def example(name: str) -> None:
        request = topic_pb2.Topic(name=name).SerializeToString()
        code, details, replies = target.unary("CreateTopic", request)
        error = expected(name)
        if error is not None:
            assert (code, details) == error
        elif name in created:
            assert (code, details) == (
                Status.ALREADY_EXISTS,
                "topic name already exists in project",
            )
        else:
            assert code == Status.OK, details
            topic = topic_pb2.Topic.FromString(replies[0])
            assert topic.name == name
            created.add(name)

    example()
    target.assert_still_serving()


def test_topic_exists_answers_for_any_name(target: FuzzTarget) -> None:
    @FUZZ
    @given(NAMES)
    def example(name: str) -> None:
        assume(name)
        code, details, replies = target.unary(
            "TopicExists", topic_pb2.TopicName(name=name).SerializeToString()
        )
        assert code == Status.OK, details
        info = topic_pb2.TopicExistsInfo.FromString(replies[0])
        if name in target.topic_names:
            assert info.exists

    example()
    target.assert_still_serving()


def test_open_stream_filters_with_any_names_are_answered(target: FuzzTarget) -> None:
    @FUZZ
    @given(st.lists(NAMES, min_size=1, max_size=4))
    def example(names: list[str]) -> None:
        request = ensign_pb2.PublisherRequest(
            open_stream=ensign_pb2.OpenStream(client_id="fuzz", topics=names)
        )
        code, details, _ = target.stream("Publish", [request.SerializeToString()])
        if set(names) & set(target.topic_names):
            assert (code, details) == (Status.OK, "")
        else:
            assert (code, details) in {
                (Status.OK, ""),
                (Status.FAILED_PRECONDITION, "no topics available"),
            }

    example()
    target.assert_still_serving()


def test_a_trailing_newline_makes_a_name_invalid(target: FuzzTarget) -> None:
    # Python's "$" also matches before a final newline; the Go regexp of the real server
    # does not, and neither may we ('name\n' would print like an existing 'name').
    name = f"newline{uuid.uuid4().hex[:8]}\n"
    code, details, _ = target.unary("CreateTopic", topic_pb2.Topic(name=name).SerializeToString())
    assert (code, details) == (Status.INVALID_ARGUMENT, "topic name is invalid")

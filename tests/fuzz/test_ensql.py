"""EnSQL strings thrown at the server (PROTOCOL.md §5).

Any text gets OK or INVALID_ARGUMENT. Queries generated from the grammar over a topic of
known events are also checked against a model of the documented semantics: WHERE over
metadata and the type name, OFFSET, and LIMIT honoured exactly, in stored order.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from django_ensign.proto.api.v1beta1 import ensign_pb2, event_pb2, query_pb2, topic_pb2
from tests.fuzz.conftest import FUZZ, FuzzTarget, Status
from tests.fuzz.strategies import TEXT, ensql
from tests.server.conftest import make_event

TOPIC = "ensqlcheck"
EVENTS = 30


@dataclass(frozen=True)
class Known:
    """One stored event as the model sees it."""

    n: int
    key: str
    type_name: str


KNOWN = [Known(n, f"k{n % 3}", "Reading" if n % 2 == 0 else "Alert") for n in range(EVENTS)]


@pytest.fixture(scope="module")
def known_topic(target: FuzzTarget) -> bytes:
    """A topic holding the ``KNOWN`` events, in order."""
    code, details, raw = target.unary(
        "CreateTopic", topic_pb2.Topic(name=TOPIC).SerializeToString()
    )
    assert code == Status.OK, details
    topic_id = topic_pb2.Topic.FromString(raw[0]).id
    requests = [
        ensign_pb2.PublisherRequest(
            open_stream=ensign_pb2.OpenStream(client_id="fuzz")
        ).SerializeToString()
    ]
    for item in KNOWN:
        event = make_event(
            json.dumps({"n": item.n}).encode(),
            type_name=item.type_name,
            metadata={"key": item.key, "n": str(item.n)},
        )
        wrapper = event_pb2.EventWrapper(topic_id=topic_id, event=event, local_id=bytes(16))
        requests.append(ensign_pb2.PublisherRequest(event=wrapper).SerializeToString())
    code, details, _ = target.stream("Publish", requests)
    assert code == Status.OK, details
    return topic_id


def run(target: FuzzTarget, text: str) -> tuple[Status, str, list[event_pb2.EventWrapper]]:
    code, details, raw = target.server_stream(
        "EnSQL", query_pb2.Query(query=text).SerializeToString()
    )
    return code, details, [event_pb2.EventWrapper.FromString(r) for r in raw]


def test_any_text_gets_ok_or_invalid_argument(target: FuzzTarget, known_topic: bytes) -> None:
    @FUZZ
    @given(st.one_of(ensql([TOPIC, *target.topic_names]), TEXT))
    def example(text: str) -> None:
        code, details, stored = run(target, text)
        assert code in {Status.OK, Status.INVALID_ARGUMENT}, (code, details)
        if code == Status.OK:
            offsets = [w.offset for w in stored]
            assert offsets == sorted(set(offsets))  # stored order, each once
            assert len({w.topic_id for w in stored}) <= 1

    example()
    target.assert_still_serving()


# ---- the model ------------------------------------------------------------------------

Condition = tuple[str, str, str]  # identifier, operator, literal as written


def _holds(item: Known, condition: Condition) -> bool:
    ident, op, literal = condition
    if ident == "type":
        actual: str | int = item.type_name
        expected: str | int = literal.strip("'")
    elif ident == "key":
        actual, expected = item.key, literal.strip("'")
    else:  # "n": numeric comparisons, or LIKE on its text
        if op == "LIKE":
            pattern = re.escape(literal.strip("'")).replace("%", ".*").replace("_", ".")
            return re.fullmatch(pattern, str(item.n)) is not None
        actual, expected = item.n, int(literal)
    return {
        "=": actual == expected,
        "!=": actual != expected,
        "<>": actual != expected,
        ">": actual > expected,  # type: ignore[operator]
        "<": actual < expected,  # type: ignore[operator]
        ">=": actual >= expected,  # type: ignore[operator]
        "<=": actual <= expected,  # type: ignore[operator]
    }[op]


CONDITIONS = st.one_of(
    st.tuples(
        st.just("key"),
        st.sampled_from(["=", "!=", "<>"]),
        st.sampled_from(["'k0'", "'k1'", "'k2'", "'k9'"]),
    ),
    st.tuples(
        st.just("type"), st.sampled_from(["=", "!="]), st.sampled_from(["'Reading'", "'Alert'"])
    ),
    st.tuples(
        st.just("n"),
        st.sampled_from(["=", "!=", ">", "<", ">=", "<="]),
        st.integers(-1, EVENTS).map(str),
    ),
    st.tuples(st.just("n"), st.just("LIKE"), st.sampled_from(["'1%'", "'_'", "'%5'", "'2_'"])),
)


@st.composite
def modelled_queries(draw: st.DrawFn) -> tuple[str, list[int]]:
    """A query over the known topic and the ``n`` of every event it must return, in order."""
    conditions = draw(st.lists(CONDITIONS, max_size=3))
    joiner = draw(st.sampled_from(["AND", "OR"]))  # one kind per query: no precedence to model
    offset = draw(st.one_of(st.none(), st.integers(0, EVENTS + 2)))
    limit = draw(st.one_of(st.none(), st.integers(0, EVENTS + 2)))
    text = f"SELECT * FROM {TOPIC}"
    if conditions:
        text += " WHERE " + f" {joiner} ".join(" ".join(c) for c in conditions)
    if offset is not None:
        text += f" OFFSET {offset}"
    if limit is not None:
        text += f" LIMIT {limit}"

    def selected(item: Known) -> bool:
        if not conditions:
            return True
        results = [_holds(item, c) for c in conditions]
        return all(results) if joiner == "AND" else any(results)

    chosen = [item.n for item in KNOWN if selected(item)][offset or 0 :]
    return text, chosen if limit is None else chosen[:limit]


def test_generated_queries_return_what_the_documented_semantics_select(
    target: FuzzTarget, known_topic: bytes
) -> None:
    @FUZZ
    @given(modelled_queries())
    def example(query: tuple[str, list[int]]) -> None:
        text, wanted = query
        code, details, stored = run(target, text)
        assert (code, details) == (Status.OK, ""), text
        got = [json.loads(event_pb2.Event.FromString(w.event).data)["n"] for w in stored]
        assert got == wanted, text
        assert all(w.topic_id == known_topic for w in stored)

    example()
    target.assert_still_serving()


def test_an_unknown_topic_is_invalid_argument(target: FuzzTarget) -> None:
    code, details, stored = run(target, "SELECT * FROM nosuchtopicanywhere")
    assert (code, details, stored) == (Status.INVALID_ARGUMENT, "unknown topic in query", [])

"""Hypothesis strategies for bad input: any protobuf message with random field values, and more.

``messages(cls, hints)`` builds instances of any generated message class by walking its
descriptor: each field is set or not, oneofs get one member, maps and repeated fields a
few entries, nested messages recurse a few levels deep. ``hints`` maps ``Message.field``
(or a bare field name, for every message) to strategies, so a test can mix real values
(an existing topic id) into the noise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

from django_ensign.wire import ids, topichash

Hints = Mapping[str, st.SearchStrategy[Any]]

#: Text without lone surrogates (protobuf refuses them before anything is sent).
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
MAX_DEPTH = 3

_INTS: dict[int, st.SearchStrategy[int]] = {
    FieldDescriptor.TYPE_INT32: st.integers(-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: st.integers(-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: st.integers(-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: st.integers(0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: st.integers(0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: st.integers(-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: st.integers(-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: st.integers(-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: st.integers(0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: st.integers(0, 2**64 - 1),
}


def _scalar(field: Any) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind in _INTS:
        return _INTS[kind]
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_DOUBLE:
        return st.floats()
    if kind == FieldDescriptor.TYPE_FLOAT:
        return st.floats(width=32)
    if kind == FieldDescriptor.TYPE_STRING:
        return TEXT
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=48)
    if kind == FieldDescriptor.TYPE_ENUM:
        # proto3 enums are open: unknown numbers travel too.
        known = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(-3, 2000))
    raise TypeError(f"unhandled field type {kind} of {field.full_name}")


def _is_map(field: Any) -> bool:
    return bool(
        field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry
    )


@st.composite
def _fill(draw: st.DrawFn, descriptor: Any, hints: Hints, depth: int) -> Message:
    message = message_factory.GetMessageClass(descriptor)()
    chosen_oneof_members = {
        oneof.name: draw(st.sampled_from([None, *oneof.fields])) for oneof in descriptor.oneofs
    }
    for field in descriptor.fields:
        oneof = field.containing_oneof
        if oneof is not None and chosen_oneof_members[oneof.name] is not field:
            continue
        if oneof is None and not draw(st.booleans()):
            continue
        _set(draw, message, field, hints, depth)
    return message


def _hint(field: Any, hints: Hints) -> st.SearchStrategy[Any] | None:
    """The hint for ``Message.field`` if there is one, else for any field of that name."""
    return hints.get(f"{field.containing_type.name}.{field.name}", hints.get(field.name))


def _value(field: Any, hints: Hints, depth: int) -> st.SearchStrategy[Any]:
    hint = _hint(field, hints)
    if hint is not None:
        return hint
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return _fill(field.message_type, hints, depth + 1)
    return _scalar(field)


def _set(draw: st.DrawFn, message: Message, field: Any, hints: Hints, depth: int) -> None:
    name = field.name
    is_message = field.type == FieldDescriptor.TYPE_MESSAGE
    if is_message and depth >= MAX_DEPTH and _hint(field, hints) is None:
        return
    if _is_map(field):
        key_field = field.message_type.fields_by_name["key"]
        value_field = field.message_type.fields_by_name["value"]
        entries = draw(
            st.dictionaries(_scalar(key_field), _value(value_field, hints, depth), max_size=3)
        )
        target = getattr(message, name)
        for key, value in entries.items():
            if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                target[key].CopyFrom(value)
            else:
                target[key] = value
        return
    if field.is_repeated:
        values = draw(st.lists(_value(field, hints, depth), max_size=3))
        target = getattr(message, name)
        for value in values:
            if is_message:
                target.add().CopyFrom(value)
            else:
                target.append(value)
        return
    value = draw(_value(field, hints, depth))
    if is_message:
        getattr(message, name).CopyFrom(value)
    else:
        setattr(message, name, value)


def messages(cls: type[Message], hints: Hints | None = None) -> st.SearchStrategy[Any]:
    """Instances of ``cls`` with random field values (see the module docstring)."""
    return _fill(cls.DESCRIPTOR, dict(hints or {}), 0)


def undecodable(cls: type[Message]) -> st.SearchStrategy[bytes]:
    """Bytes that do not parse as ``cls`` (most random bytes do parse, as unknown fields)."""

    def fails(raw: bytes) -> bool:
        try:
            cls.FromString(raw)
        except Exception:
            return True
        return False

    corrupt = st.binary(min_size=1, max_size=64).map(lambda raw: b"\xff" + raw)
    return st.one_of(corrupt, st.binary(min_size=1, max_size=64)).filter(fails)


def known_refs(real_names: list[str], real_ids: list[bytes]) -> list[str]:
    """Every way a topic filter may name the real topics: names, ULID strings, name hashes."""
    return [
        *real_names,
        *(ids.ulid_to_str(i) for i in real_ids),
        *(ids.ulid_to_str(i).lower() for i in real_ids),
        *(topichash.topic_hash_str(n) for n in real_names),
    ]


def topic_refs(real_names: list[str], real_ids: list[bytes]) -> st.SearchStrategy[str]:
    """What clients put in topic filters: references to the real topics, or noise."""
    return st.one_of(st.sampled_from(known_refs(real_names, real_ids)), TEXT)


def topic_ids(real_ids: list[bytes]) -> st.SearchStrategy[bytes]:
    """Binary topic ids: real ones, fresh ULIDs, or bytes of any length."""
    return st.one_of(st.sampled_from(real_ids), st.builds(ids.new_ulid), st.binary(max_size=20))


IDENTIFIERS = st.sampled_from(
    ["type", "type_name", "mimetype", "version", "id", "key", "n", "name", "offset", "select"]
)
OPERATORS = st.sampled_from(["=", "!=", "<>", ">", "<", ">=", "<=", "LIKE", "ILIKE", "like", "=="])
VALUES = st.one_of(
    st.integers(-5, 10**6).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    TEXT.map(lambda t: "'" + t.replace("'", "''") + "'"),
    TEXT.map(lambda t: "'" + t),  # an unterminated string
    TEXT,
)


@st.composite
def ensql(draw: st.DrawFn, topics: list[str]) -> str:
    """EnSQL text from the grammar of PROTOCOL.md §5, often bent or broken."""
    fields = draw(
        st.one_of(st.just("*"), st.lists(IDENTIFIERS, min_size=1, max_size=3).map(", ".join))
    )
    topic = draw(st.one_of(st.sampled_from(topics), TEXT, IDENTIFIERS))
    parts = ["SELECT", fields, "FROM", topic]
    conditions = draw(st.lists(st.tuples(IDENTIFIERS, OPERATORS, VALUES), max_size=3))
    for index, (ident, op, value) in enumerate(conditions):
        parts.append("WHERE" if index == 0 else draw(st.sampled_from(["AND", "OR", "and", "XOR"])))
        parts += [ident, op, value]
    for clause in ("OFFSET", "LIMIT"):
        if draw(st.booleans()):
            parts += [clause, draw(st.one_of(st.integers(-2, 50).map(str), TEXT))]
    text = " ".join(parts)
    if draw(st.integers(0, 4)) == 0:  # cut it anywhere
        text = text[: draw(st.integers(0, len(text)))]
    if draw(st.integers(0, 4)) == 0:  # change its case
        text = text.lower() if draw(st.booleans()) else text.upper()
    return draw(st.one_of(st.just(text), st.just(text), TEXT))

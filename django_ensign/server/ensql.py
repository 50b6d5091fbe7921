"""A small EnSQL: ``SELECT * | fields FROM topic [WHERE …] [OFFSET n] [LIMIT n]`` (PROTOCOL.md §5).

WHERE conditions compare an identifier with a literal. Identifiers: ``type`` / ``type.name``
(the event type name), ``type.version`` (``major.minor.patch``), ``mimetype`` (its IANA name or
enum number), and anything else is a metadata key (``meta.`` / ``metadata.`` prefixes are
stripped). A missing metadata key makes its condition false. Numbers compare numerically when
both sides parse as numbers. Keywords are whole words, so a topic may be called ``orders``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from django_ensign.proto.api.v1beta1 import event_pb2
from django_ensign.wire import mimetypes

KEYWORDS = {"SELECT", "FROM", "WHERE", "AND", "OR", "OFFSET", "LIMIT", "LIKE", "ILIKE", "NOT"}
OPERATORS = ("!=", "<>", ">=", "<=", "=", ">", "<")

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^']|'')*')
      | (?P<number>-?\d+(?:\.\d+)?(?![A-Za-z_]))
      | (?P<word>[A-Za-z_][A-Za-z0-9_.\-/]*)
      | (?P<op>!=|<>|>=|<=|=|>|<)
      | (?P<punct>[*,()])
    )""",
    re.VERBOSE,
)


class QueryError(ValueError):
    """The query does not parse."""


@dataclass(frozen=True)
class Token:
    kind: str
    text: str


def tokenize(text: str) -> list[Token]:
    """Split a query into tokens; keywords are recognised only as whole words."""
    tokens: list[Token] = []
    pos = 0
    text = text.rstrip().rstrip(";")
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise QueryError(f"unexpected character at position {pos}: {text[pos : pos + 10]!r}")
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "word" and value.upper() in KEYWORDS:
            tokens.append(Token("kw", value.upper()))
        else:
            tokens.append(Token(kind, value))
        pos = match.end()
    return tokens


@dataclass(frozen=True)
class EventRow:
    """The queryable columns of one stored event."""

    type_name: str
    type_version: str
    mimetype: int
    metadata: dict[str, str]


@dataclass(frozen=True)
class Condition:
    """``ident OP value``."""

    ident: str
    op: str
    value: str | float

    def matches(self, row: EventRow) -> bool:
        """Whether the row satisfies the condition."""
        key = self.ident
        lowered = key.lower()
        actual: str | None
        if lowered in ("type", "type.name", "type_name"):
            actual = row.type_name
        elif lowered in ("type.version", "version", "type_version"):
            actual = row.type_version
        elif lowered == "mimetype":
            if isinstance(self.value, float):
                return _compare(float(row.mimetype), self.op, self.value)
            actual = mimetypes.NAMES.get(row.mimetype, str(row.mimetype))
        else:
            for prefix in ("metadata.", "meta."):
                if key.startswith(prefix):
                    key = key[len(prefix) :]
                    break
            actual = row.metadata.get(key)
            if actual is None:
                return False
        if isinstance(self.value, float):
            try:
                return _compare(float(actual), self.op, self.value)
            except ValueError:
                return _compare(actual, self.op, _num_text(self.value))
        return _compare(actual, self.op, self.value)


def _num_text(value: float) -> str:
    return str(int(value)) if value.is_integer() else str(value)


def _like(pattern: str, flags: int) -> re.Pattern[str]:
    parts = []
    for char in pattern:
        if char == "%":
            parts.append(".*")
        elif char == "_":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), flags | re.DOTALL)


def _compare(actual: Any, op: str, expected: Any) -> bool:
    if op == "=":
        return bool(actual == expected)
    if op in ("!=", "<>"):
        return bool(actual != expected)
    if op == ">":
        return bool(actual > expected)
    if op == "<":
        return bool(actual < expected)
    if op == ">=":
        return bool(actual >= expected)
    if op == "<=":
        return bool(actual <= expected)
    if op == "LIKE":
        return _like(str(expected), 0).fullmatch(str(actual)) is not None
    if op == "ILIKE":
        return _like(str(expected), re.IGNORECASE).fullmatch(str(actual)) is not None
    raise QueryError(f"unknown operator {op}")


@dataclass(frozen=True)
class BoolOp:
    """AND / OR over sub-expressions."""

    op: str
    parts: tuple[Expr, ...]

    def matches(self, row: EventRow) -> bool:
        """Whether the row satisfies the expression."""
        if self.op == "AND":
            return all(part.matches(row) for part in self.parts)
        return any(part.matches(row) for part in self.parts)


@dataclass(frozen=True)
class Not:
    """NOT expression."""

    part: Expr

    def matches(self, row: EventRow) -> bool:
        """Whether the row does not satisfy the inner expression."""
        return not self.part.matches(row)


Expr = Condition | BoolOp | Not


@dataclass
class Query:
    """A parsed EnSQL query."""

    topic: str
    fields: list[str] = field(default_factory=list)
    where: Expr | None = None
    offset: int = 0
    limit: int | None = None

    def matches(self, row: EventRow) -> bool:
        """Whether the WHERE clause accepts the row (always, without one)."""
        return self.where is None or self.where.matches(row)


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise QueryError("unexpected end of query")
        self.pos += 1
        return token

    def expect_kw(self, word: str) -> None:
        token = self.take()
        if token.kind != "kw" or token.text != word:
            raise QueryError(f"expected {word}, found {token.text!r}")

    def at_kw(self, word: str) -> bool:
        token = self.peek()
        return token is not None and token.kind == "kw" and token.text == word

    def ident(self, what: str) -> str:
        token = self.take()
        if token.kind != "word":
            raise QueryError(f"expected {what}, found {token.text!r}")
        return token.text

    def query(self) -> Query:
        self.expect_kw("SELECT")
        fields: list[str] = []
        token = self.peek()
        if token is not None and token.kind == "punct" and token.text == "*":
            self.take()
        else:
            fields.append(self.ident("a field name or *"))
            while (t := self.peek()) is not None and t.kind == "punct" and t.text == ",":
                self.take()
                fields.append(self.ident("a field name"))
        self.expect_kw("FROM")
        query = Query(topic=self.ident("a topic name"), fields=fields)
        if self.at_kw("WHERE"):
            self.take()
            query.where = self.disjunction()
        seen: set[str] = set()
        while self.peek() is not None:
            token = self.take()
            if token.kind != "kw" or token.text not in ("OFFSET", "LIMIT") or token.text in seen:
                raise QueryError(f"unexpected {token.text!r}")
            seen.add(token.text)
            number = self.take()
            if number.kind != "number" or not number.text.isdigit():
                raise QueryError(f"{token.text} needs a non-negative integer")
            if token.text == "OFFSET":
                query.offset = int(number.text)
            else:
                query.limit = int(number.text)
        return query

    def disjunction(self) -> Expr:
        parts = [self.conjunction()]
        while self.at_kw("OR"):
            self.take()
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else BoolOp("OR", tuple(parts))

    def conjunction(self) -> Expr:
        parts = [self.factor()]
        while self.at_kw("AND"):
            self.take()
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else BoolOp("AND", tuple(parts))

    def factor(self) -> Expr:
        token = self.peek()
        if token is not None and token.kind == "kw" and token.text == "NOT":
            self.take()
            return Not(self.factor())
        if token is not None and token.kind == "punct" and token.text == "(":
            self.take()
            inner = self.disjunction()
            close = self.take()
            if close.text != ")":
                raise QueryError("expected )")
            return inner
        ident = self.ident("a field name")
        op_token = self.take()
        if op_token.kind == "op" or (op_token.kind == "kw" and op_token.text in ("LIKE", "ILIKE")):
            op = op_token.text
        else:
            raise QueryError(f"expected an operator, found {op_token.text!r}")
        value_token = self.take()
        value: str | float
        if value_token.kind == "string":
            value = value_token.text[1:-1].replace("''", "'")
        elif value_token.kind == "number":
            value = float(value_token.text)
        elif value_token.kind == "word" and value_token.text.lower() in ("true", "false"):
            value = value_token.text.lower()
        else:
            raise QueryError(f"expected a value, found {value_token.text!r}")
        return Condition(ident, op, value)


def parse(text: str) -> Query:
    """Parse an EnSQL query; QueryError on anything it does not understand."""
    if not text or not text.strip():
        raise QueryError("empty query")
    tokens = tokenize(text)
    if not tokens:
        raise QueryError("empty query")
    return _Parser(tokens).query()


def row_from_event(event: event_pb2.Event) -> EventRow:
    """The queryable columns of an Event."""
    ty = event.type
    version = f"{ty.major_version}.{ty.minor_version}.{ty.patch_version}"
    return EventRow(ty.name, version, int(event.mimetype), dict(event.metadata))


def row_from_wrapper(wrapper: bytes) -> EventRow:
    """The queryable columns of a stored EventWrapper (an unparseable event has none)."""
    try:
        event = event_pb2.Event.FromString(event_pb2.EventWrapper.FromString(wrapper).event)
    except Exception:
        event = event_pb2.Event()
    return row_from_event(event)

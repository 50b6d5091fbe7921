"""The relay's database side: claim rows under a lease, record outcomes, renew and release.

Every function here is synchronous, short, and runs in one of the relay's database
threads; none holds a transaction across network I/O. Recording is compare-and-set
on the lease token, so a relay whose lease expired (and whose rows another relay
reclaimed) can no longer change them. Times come from the database clock.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

from django.db import connections, transaction
from django.db.models import (
    Case,
    DateTimeField,
    DurationField,
    ExpressionWrapper,
    F,
    Field,
    Max,
    Q,
    QuerySet,
    SmallIntegerField,
    TextField,
    Value,
    When,
)
from django.db.models.expressions import CombinedExpression
from django.db.models.functions import Cast, Now
from django.utils import timezone

from django_ensign import backoff, databases, pgclaims, servertime, sqliteclaims
from django_ensign.models import OutboxEvent, OutboxStatus


class Claimed(NamedTuple):
    """A row the relay holds a lease on, with what it needs to publish it.

    A tuple in the column order of the claim statements, so a claimed row becomes one
    without a copy: the relay makes one per row, and only the rows that fail need more
    than their id, token and event fields.
    """

    token: uuid.UUID
    id: int
    event_id: str
    topic: str
    data: bytes
    mimetype: str
    type_name: str
    type_version: str
    #: As the database returned it (JSON text, or a dict); :attr:`metadata` parses it.
    raw_metadata: str | bytes | dict[str, str] | None
    ordering_key: str
    attempts: int

    @property
    def metadata(self) -> dict[str, str]:
        """The row's metadata as a new dict."""
        raw = self.raw_metadata
        if isinstance(raw, str | bytes):
            raw = json.loads(raw) if len(raw) > 2 else None  # "{}", or empty
        return dict(raw or {})  # JSON null too


@dataclass(slots=True)
class Acked:
    """The server acked the row's event at ``committed_at``."""

    row: Claimed
    committed_at: dt.datetime | None


@dataclass(slots=True)
class Failed:
    """The server nacked the event (``code`` set) or no reply came (``code`` None).

    ``final``: publishing again cannot help (the SDK refused the event itself).
    """

    row: Claimed
    error: str
    code: int | None = None
    final: bool = False


@dataclass(slots=True)
class Released:
    """Not published, through no fault of the event: the row waits again, uncounted."""

    row: Claimed


Outcome = Acked | Failed | Released


@dataclass
class Recorded:
    """What :func:`record` changed."""

    acked: int = 0
    retrying: int = 0
    dead: int = 0
    released: int = 0
    stale: int = 0
    dead_ids: list[int] = field(default_factory=list)


def _later(seconds: float) -> ExpressionWrapper[CombinedExpression]:
    return ExpressionWrapper(
        Now() + Value(dt.timedelta(seconds=seconds), output_field=DurationField()),
        output_field=DateTimeField(),
    )


def claim(
    *,
    limit: int,
    lease_seconds: float,
    topics: Sequence[str] = (),
    using: str = "default",
) -> list[Claimed]:
    """Lease up to ``limit`` claimable rows (oldest first) to a new token and return them.

    A row is claimable when it is due (or its lease expired) and no earlier row of its
    ordering key is unfinished. Each database claims in one statement of its own
    (:mod:`~django_ensign.pgclaims`, :mod:`~django_ensign.sqliteclaims`), so concurrent
    relays take disjoint rows; any other database is refused.
    """
    databases.require_supported(using)
    postgres = connections[using].vendor == "postgresql"
    rows = (pgclaims if postgres else sqliteclaims).claim(
        limit=limit, lease_seconds=lease_seconds, topics=topics, using=using
    )
    return [from_row(row) for row in rows]


def newest_id(*, using: str = "default") -> int | None:
    """The highest outbox row id written so far (None for an empty table)."""
    newest: int | None = OutboxEvent.objects.using(using).aggregate(newest=Max("id"))["newest"]
    return newest


def from_row(row: tuple[Any, ...]) -> Claimed:
    """A claimed row from ``(token, *columns)``, as the vendor claim modules return it."""
    if type(row[4]) is not bytes:  # psycopg2 and some drivers give bytea as a memoryview
        row = (*row[:4], bytes(row[4]), *row[5:])
    return Claimed._make(row)


def _held(rows: Iterable[Claimed], using: str) -> QuerySet[OutboxEvent]:
    """The given rows, only while the lease that claimed them still holds them."""
    condition = Q()
    by_token: dict[uuid.UUID, list[int]] = {}
    for row in rows:
        by_token.setdefault(row.token, []).append(row.id)
    for token, ids in by_token.items():
        condition |= Q(lease_token=token, id__in=ids)
    return OutboxEvent.objects.using(using).filter(condition, status=OutboxStatus.IN_FLIGHT)


def record(
    outcomes: Sequence[Outcome],
    *,
    max_attempts: int,
    backoff_base: float,
    backoff_max: float,
    using: str = "default",
    rng: random.Random | None = None,
) -> Recorded:
    """Write acks, retries and deaths in one short transaction, guarded by each row's lease."""
    result = Recorded()
    acks = [o for o in outcomes if isinstance(o, Acked)]
    failures = [o for o in outcomes if isinstance(o, Failed)]
    released = [o.row for o in outcomes if isinstance(o, Released)]
    with transaction.atomic(using=using):
        if released:
            result.released = release(released, using=using)
        if acks and connections[using].vendor == "postgresql":
            result.acked = pgclaims.record_acks(
                [(o.row.id, o.row.token, o.committed_at) for o in acks], using
            )
        elif acks:
            result.acked = _record_acks_portable(acks, using)
        dead = [
            o
            for o in failures
            if o.final or not backoff.is_retryable(o.code) or o.row.attempts >= max_attempts
        ]
        dead_rows = {o.row.id for o in dead}
        retry = [o for o in failures if o.row.id not in dead_rows]
        size = _rows_per_statement(using)
        for part in _parts(dead, size):
            # The write comes first: on SQLite a transaction that starts with a read cannot
            # take the write lock once another commit has landed since ("database is
            # locked" at once, whatever the busy timeout).
            ids = [o.row.id for o in part]
            done = _held([o.row for o in part], using).update(
                status=OutboxStatus.DEAD,
                lease_token=None,
                lease_expires_at=None,
                **_failure_fields(part),
            )
            if done < len(part):  # some leases lapsed: name only the rows now dead (a log's)
                ids = list(
                    OutboxEvent.objects.using(using)
                    .filter(id__in=ids, status=OutboxStatus.DEAD, lease_token=None)
                    .values_list("id", flat=True)
                )
            result.dead += done
            result.dead_ids += ids
        for part in _parts(retry, size):
            next_at = Case(
                *[
                    When(
                        id=o.row.id,
                        then=_later(
                            backoff.delay(
                                o.row.attempts, base=backoff_base, cap=backoff_max, rng=rng
                            )
                        ),
                    )
                    for o in part
                ],
                output_field=DateTimeField(),
            )
            result.retrying += _held([o.row for o in part], using).update(
                status=OutboxStatus.RETRYING,
                next_attempt_at=next_at,
                lease_token=None,
                lease_expires_at=None,
                **_failure_fields(part),
            )
    result.stale = len(outcomes) - result.acked - result.dead - result.retrying - result.released
    return result


#: Bound parameters a failed row adds to its UPDATE: an id and a value per column set
#: row by row (next attempt, nack code, nack error, last error), and its id in the filter.
_PARAMS_PER_FAILED_ROW = 10


def _rows_per_statement(using: str) -> int:
    """How many rows one UPDATE of failures may hold within the database's parameter limit.

    A window of nacks past the limit ("too many SQL variables") would fail every retry of
    the write, and hold the relay's recorder for good.
    """
    limit = connections[using].features.max_query_params or 65_535
    return max(1, (limit - 50) // _PARAMS_PER_FAILED_ROW)


T = TypeVar("T")


def _parts(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _record_acks_portable(acks: Sequence[Acked], using: str) -> int:
    """One parameterized ``UPDATE`` per ack in a single ``executemany`` (SQLite and others)."""
    connection = connections[using]
    table = connection.ops.quote_name(OutboxEvent._meta.db_table)
    token_field = OutboxEvent._meta.get_field("lease_token")
    acked_field = OutboxEvent._meta.get_field("acked_at")
    now = timezone.now()
    params = [
        (
            acked_field.get_db_prep_value(servertime.stored(o.committed_at) or now, connection),
            o.row.id,
            token_field.get_db_prep_value(o.row.token, connection),
        )
        for o in acks
    ]
    with connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {table} SET status = 'acked', acked_at = %s, lease_token = NULL, "
            "lease_expires_at = NULL, nack_code = NULL, nack_error = '' "
            "WHERE id = %s AND lease_token = %s AND status = 'in_flight'",
            params,
        )
        return max(int(cursor.rowcount), 0)


def _failure_fields(failures: Sequence[Failed]) -> dict[str, Any]:
    def per_row(value: Callable[[Failed], Any], output: Field[Any, Any]) -> Cast:
        # The cast types NULL parameters, which PostgreSQL would otherwise take for text.
        return Cast(
            Case(
                *[When(id=o.row.id, then=Value(value(o), output_field=output)) for o in failures],
                output_field=output,
            ),
            output,
        )

    return {
        "nack_code": per_row(lambda o: _storable_code(o.code), SmallIntegerField()),
        "nack_error": per_row(
            lambda o: _storable_text(o.error) if o.code is not None else "", TextField()
        ),
        "last_error": per_row(
            lambda o: _storable_text(o.error if o.code is None else f"nack {o.code}: {o.error}"),
            TextField(),
        ),
    }


# What a server or an exception says is stored as it can be: a write that can never
# succeed would hold the recorder, and every outcome behind it, forever.
_SMALLINT_MIN, _SMALLINT_MAX = -(2**15), 2**15 - 1


def _storable_code(code: int | None) -> int | None:
    """A nack code the column holds; others (no Ensign code is that large) stay in the text."""
    if code is None or not _SMALLINT_MIN <= code <= _SMALLINT_MAX:
        return None
    return code


def _storable_text(text: str) -> str:
    """``text`` without NUL characters, which PostgreSQL's text columns refuse."""
    return text.replace("\x00", "\N{REPLACEMENT CHARACTER}")


def renew(tokens: Iterable[uuid.UUID], *, lease_seconds: float, using: str = "default") -> int:
    """Extend the leases of rows still in flight under ``tokens``; returns how many."""
    tokens = list(tokens)
    if not tokens:
        return 0
    return (
        OutboxEvent.objects.using(using)
        .filter(lease_token__in=tokens, status=OutboxStatus.IN_FLIGHT)
        .update(lease_expires_at=_later(lease_seconds))
    )


def release(rows: Sequence[Claimed], *, using: str = "default") -> int:
    """Give back rows claimed but not published: waiting again, attempt not counted."""
    return sum(
        _held(part, using).update(
            status=OutboxStatus.PENDING,
            lease_token=None,
            lease_expires_at=None,
            attempts=F("attempts") - 1,
        )
        for part in _parts(rows, _rows_per_statement(using))
    )

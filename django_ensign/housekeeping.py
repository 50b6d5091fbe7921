"""Operations on the tables for people: retry now, requeue dead rows, prune, status counts.

The admin's actions and the prune commands call these; so can your own code.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import connections, router
from django.db.models import Max, Min, Q, QuerySet
from django.db.models.functions import Now
from django.utils import timezone

from django_ensign.models import (
    OUTBOX_WAITING,
    InboxEvent,
    OutboxEvent,
    OutboxStatus,
    outbox_alias,
)
from django_ensign.pruning import delete_in_batches


def retry_now(rows: QuerySet[OutboxEvent]) -> int:
    """Make the waiting rows among ``rows`` due immediately; returns how many."""
    return rows.filter(status__in=OUTBOX_WAITING).update(next_attempt_at=Now())


def requeue_dead(rows: QuerySet[OutboxEvent]) -> int:
    """Give the dead rows among ``rows`` a fresh start (attempts reset, last error kept)."""
    return rows.filter(status=OutboxStatus.DEAD).update(
        status=OutboxStatus.PENDING,
        attempts=0,
        next_attempt_at=Now(),
        nack_code=None,
        nack_error="",
        lease_token=None,
        lease_expires_at=None,
    )


def prune(older_than: dt.timedelta, *, batch_size: int = 1000, using: str | None = None) -> int:
    """Delete acked rows acked more than ``older_than`` ago, ``batch_size`` at a time.

    ``using`` defaults to where the router writes outbox rows.

    Short statements keep locks and the xmin horizon short on a busy queue table.
    Dead rows are never pruned: requeue or inspect them.
    """
    cutoff = timezone.now() - older_than
    rows = OutboxEvent.objects.using(using or outbox_alias())
    old = rows.filter(status=OutboxStatus.ACKED, acked_at__lt=cutoff)
    # Oldest first, along the partial acked_at index kept for this.
    return delete_in_batches(old.order_by("acked_at"), batch_size)


#: The shortest age :func:`prune_inbox` accepts without ``force``: shorter ages sit too
#: close to the redelivery windows (delivery timeout, relay retries) to be safe to prune.
INBOX_PRUNE_FLOOR = dt.timedelta(hours=1)


def prune_inbox(
    older_than: dt.timedelta,
    *,
    batch_size: int = 1000,
    using: str | None = None,
    force: bool = False,
) -> int:
    """Delete inbox rows handled more than ``older_than`` ago, ``batch_size`` at a time.

    An event redelivered after its row is gone is applied again, so ``older_than`` must
    exceed every redelivery window: a consumer group's delivery timeout, how long an
    outbox row can stay unacked (relay retries and downtime), any replay from an
    earlier position. Below :data:`INBOX_PRUNE_FLOOR` this raises ValueError unless
    ``force``. ``using`` defaults to where the router writes inbox rows. Dead letters
    are never pruned: they wait for a person.
    """
    if older_than < INBOX_PRUNE_FLOOR and not force:
        raise ValueError(
            f"refusing to prune inbox rows younger than {INBOX_PRUNE_FLOOR} (asked for "
            f"{older_than}): an event redelivered after its row is pruned is applied again; "
            "pick an age longer than any redelivery window, or pass --force (force=True)"
        )
    alias = using or router.db_for_write(InboxEvent)
    cutoff = timezone.now() - older_than
    old = InboxEvent.objects.using(alias).filter(handled_at__lt=cutoff)
    # Oldest first, along the handled_at index.
    return delete_in_batches(old.order_by("handled_at"), batch_size)


@dataclass(frozen=True)
class OutboxHealth:
    """Counts per status and the age of the oldest row waiting to be published."""

    counts: dict[str, int]
    oldest_pending_age: dt.timedelta | None

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def health(using: str | None = None) -> OutboxHealth:
    """How the outbox is doing right now (``using``: by default, where the router reads it)."""
    alias = using or router.db_for_read(OutboxEvent)
    rows = OutboxEvent.objects.using(alias)
    counts = _counts_per_status(alias)
    # The database's clock, which stamps the rows and their leases: this process's may
    # differ, and on SQLite without USE_TZ it reads local time against the rows' UTC.
    # A row whose relay died waits too, though its status still says in flight.
    waiting = Q(status__in=OUTBOX_WAITING) | Q(
        status=OutboxStatus.IN_FLIGHT, lease_expires_at__lt=Now()
    )
    # Both times read, not their difference: psycopg reads an interval in PostgreSQL's
    # default IntervalStyle only.
    found = rows.filter(waiting).aggregate(oldest=Min("created"), now=Max(Now()))
    oldest, now = found["oldest"], found["now"]
    age = None if oldest is None else max(now - oldest, dt.timedelta(0))
    return OutboxHealth(counts, age)


def _counts_per_status(alias: str) -> dict[str, int]:
    """The rows of each status, all from one statement: separate counts, each with its own
    snapshot, would count a row the relay moves in between twice, or not at all."""
    connection = connections[alias]
    table = connection.ops.quote_name(OutboxEvent._meta.db_table)
    column = connection.ops.quote_name(str(OutboxEvent._meta.get_field("status").column))
    # Literal statuses, not parameters, so each count reads only its status's partial
    # index (a generic plan could not use one); they are this module's own constants.
    counts = ", ".join(
        f"(SELECT COUNT(*) FROM {table} WHERE {column} = '{status}')"
        for status in OutboxStatus.values
    )
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {counts}")
        row = cursor.fetchone()
    return dict(zip(OutboxStatus.values, map(int, row), strict=True))

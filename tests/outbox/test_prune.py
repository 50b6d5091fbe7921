"""`manage.py ensign_prune_outbox --older-than 7d` deletes old acked rows, nothing else."""

from __future__ import annotations

import datetime as dt
import sqlite3
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from django_ensign import outbox
from django_ensign.models import OutboxEvent, OutboxStatus

pytestmark = pytest.mark.django_db


def make(status: str, acked_days_ago: float | None) -> OutboxEvent:
    row = outbox.publish("t", {"s": status})
    acked_at = (
        timezone.now() - dt.timedelta(days=acked_days_ago) if acked_days_ago is not None else None
    )
    OutboxEvent.objects.filter(id=row.id).update(status=status, acked_at=acked_at)
    return row


def test_prune_deletes_only_acked_rows_older_than_the_age_in_batches() -> None:
    old = [make(OutboxStatus.ACKED, 8) for _ in range(5)]
    recent = make(OutboxStatus.ACKED, 1)
    dead = make(OutboxStatus.DEAD, None)
    pending = make(OutboxStatus.PENDING, None)
    out = StringIO()
    call_command("ensign_prune_outbox", "--older-than", "7d", "--batch-size", "2", stdout=out)
    assert out.getvalue().strip() == "deleted 5 acked outbox rows"
    remaining = set(OutboxEvent.objects.values_list("id", flat=True))
    assert remaining == {recent.id, dead.id, pending.id}
    assert not remaining & {r.id for r in old}


@pytest.mark.parametrize(
    ("age", "days"), [("12h", 0.5), ("2w", 14), ("90m", 90 / 1440), ("30s", 30 / 86400)]
)
def test_prune_understands_units(age: str, days: float) -> None:
    older = make(OutboxStatus.ACKED, days * 1.5)
    newer = make(OutboxStatus.ACKED, days * 0.5)
    call_command("ensign_prune_outbox", "--older-than", age, stdout=StringIO())
    assert list(OutboxEvent.objects.values_list("id", flat=True)) == [newer.id]
    assert not OutboxEvent.objects.filter(id=older.id).exists()


def test_prune_rejects_an_age_without_unit() -> None:
    with pytest.raises(CommandError, match="7d"):
        call_command("ensign_prune_outbox", "--older-than", "7")


def test_prune_rejects_a_batch_size_below_one_and_is_quiet_at_verbosity_zero() -> None:
    with pytest.raises(CommandError, match="at least 1"):
        call_command("ensign_prune_outbox", "--batch-size", "0")
    out = StringIO()
    call_command("ensign_prune_outbox", "--verbosity", "0", stdout=out)
    assert out.getvalue() == ""


def test_an_option_the_command_lacks_is_refused_not_taken_for_a_prefix() -> None:
    # argparse would read --force as Django's --force-color and delete without a word.
    with pytest.raises(CommandError, match="unrecognized arguments: --force"):
        call_command("ensign_prune_outbox", "--older-than", "7d", "--force")


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--older-than", "100000000d", "longer than a hundred years"),
        ("--batch-size", "-1", "at least 1"),
    ],
)
def test_prune_refuses_an_age_or_batch_it_cannot_use(option: str, value: str, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("ensign_prune_outbox", option, value)


def test_prune_names_a_database_alias_that_is_not_configured() -> None:
    with pytest.raises(CommandError, match="The connection 'nowhere' doesn't exist"):
        call_command("ensign_prune_outbox", "--database", "nowhere")


def test_a_batch_larger_than_a_statement_takes_is_deleted_in_parts() -> None:
    rows = outbox.publish_many([outbox.Message("t", {"n": n}) for n in range(1200)])
    OutboxEvent.objects.filter(id__in=[r.id for r in rows]).update(
        status=OutboxStatus.ACKED, acked_at=timezone.now() - dt.timedelta(days=8)
    )
    out = StringIO()
    if connection.vendor != "sqlite":
        call_command("ensign_prune_outbox", "--batch-size", "1500", stdout=out)
    else:
        # The 999 parameters of the oldest SQLite builds Django supports.
        connection.ensure_connection()
        limit = sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER
        before = connection.connection.setlimit(limit, 999)
        try:
            call_command("ensign_prune_outbox", "--batch-size", "1500", stdout=out)
        finally:
            connection.connection.setlimit(limit, before)
    assert out.getvalue().strip() == "deleted 1200 acked outbox rows"

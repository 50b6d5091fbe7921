"""`ensign_prune_inbox --older-than 7d` deletes old inbox rows in batches, nothing else."""

from __future__ import annotations

import datetime as dt
import itertools
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_ensign import tasks
from django_ensign.models import DeadLetter, DeadLetterReason, InboxEvent

pytestmark = pytest.mark.django_db

_ids = itertools.count()


def handled(hours_ago: float, handler: str = "h") -> InboxEvent:
    return InboxEvent.objects.create(
        handler=handler,
        event_id=f"01J{next(_ids):023d}",
        topic="t",
        handled_at=timezone.now() - dt.timedelta(hours=hours_ago),
    )


def remaining() -> set[int]:
    return set(InboxEvent.objects.values_list("id", flat=True))


def prune(*argv: str) -> str:
    out = StringIO()
    call_command("ensign_prune_inbox", *argv, stdout=out)
    return out.getvalue().strip()


def test_deletes_only_rows_handled_before_the_cutoff_in_batches() -> None:
    for n in range(5):
        handled(8 * 24 + n, handler=f"h{n % 2}")
    recent = handled(6 * 24)
    dead = DeadLetter.objects.create(
        event_id="01JDEAD",
        topic="t",
        data=b"{}",
        reason=DeadLetterReason.FAILED,
        created=timezone.now() - dt.timedelta(days=30),
        last_failed_at=timezone.now() - dt.timedelta(days=30),
    )
    with CaptureQueriesContext(connection) as queries:
        output = prune("--older-than", "7d", "--batch-size", "2")
    assert output == "deleted 5 inbox rows"
    assert remaining() == {recent.id}
    deletes = [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith("DELETE")]
    assert len(deletes) == 3  # 2 + 2 + 1
    assert DeadLetter.objects.filter(id=dead.id).exists()


def test_the_default_age_is_seven_days_and_nothing_old_prints_zero() -> None:
    old, recent = handled(7 * 24 + 1), handled(7 * 24 - 1)
    assert prune() == "deleted 1 inbox rows"
    assert remaining() == {recent.id}
    assert not InboxEvent.objects.filter(id=old.id).exists()
    assert prune() == "deleted 0 inbox rows"


@pytest.mark.parametrize(("age", "hours"), [("12h", 12), ("2w", 14 * 24), ("90m", 1.5)])
def test_understands_units(age: str, hours: float) -> None:
    handled(hours * 1.5)
    newer = handled(hours * 0.5)
    assert prune("--older-than", age) == "deleted 1 inbox rows"
    assert remaining() == {newer.id}


@pytest.mark.parametrize("age", ["30m", "59m", "0.5h", "0s"])
def test_refuses_an_age_under_an_hour_without_force(age: str) -> None:
    rows = {handled(2).id, handled(0.1).id}
    with pytest.raises(CommandError, match="--force") as info:
        prune("--older-than", age)
    assert "applied again" in str(info.value)
    assert remaining() == rows


def test_force_allows_a_short_age_and_an_hour_needs_no_force() -> None:
    handled(2)
    half_hour = handled(0.75)
    recent = handled(0.1)
    assert prune("--older-than", "1h") == "deleted 1 inbox rows"
    assert prune("--older-than", "30m", "--force") == "deleted 1 inbox rows"
    assert remaining() == {recent.id}
    assert not InboxEvent.objects.filter(id=half_hour.id).exists()


@pytest.mark.parametrize("age", ["7", "7x", "", "d", "-1d", "7 days", "6mo", "7D"])
def test_rejects_an_age_it_cannot_read(age: str) -> None:
    handled(30 * 24)
    with pytest.raises(CommandError, match=r"use a number and a unit: s, m \(minutes\)"):
        prune(f"--older-than={age}")  # the = form, or argparse takes "-1d" for an option
    assert InboxEvent.objects.count() == 1


def test_the_help_warns_about_redelivery_and_dead_letters() -> None:
    from django_ensign.management.commands.ensign_prune_inbox import Command

    assert "redelivery window" in Command.help
    assert "Dead letters are not pruned" in Command.help


def test_the_celery_task_prunes_the_same_way() -> None:
    handled(8 * 24)
    recent = handled(1)
    assert tasks.prune_inbox.apply(kwargs={"older_than": "7d", "batch_size": 1}).get() == 1
    assert remaining() == {recent.id}
    with pytest.raises(ValueError, match="applied again"):
        tasks.prune_inbox("10m")


def test_rejects_a_batch_size_below_one_and_is_quiet_at_verbosity_zero() -> None:
    handled(hours_ago=24 * 8)
    with pytest.raises(CommandError, match="at least 1"):
        prune("--batch-size", "0")
    assert len(remaining()) == 1
    assert prune("--verbosity", "0") == ""
    assert remaining() == set()

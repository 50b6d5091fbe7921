"""The ``--celery`` mode's task, run by Celery in this process (eagerly)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import OperationalError
from django.test import override_settings

from django_ensign import dispatch, tasks
from django_ensign.handlers import InboundEvent, registry
from django_ensign.models import DeadLetter, DeadLetterReason, InboxEvent
from tests.handlerapp import ensign_handlers
from tests.handlerapp.models import Applied, Switch

pytestmark = pytest.mark.django_db


def payload(topic: str, **kw: str) -> dict[str, object]:
    event = InboundEvent(
        topic=topic,
        event_id="01J0000000000000000000TASK",
        data=b'{"n": 1}',
        mimetype="application/json",
        **kw,
    )  # type: ignore[arg-type]
    return json.loads(json.dumps(event.to_payload()))  # what the broker carries


def test_the_task_applies_an_event_once_however_often_it_runs() -> None:
    tasks.handle_event.apply(args=[payload("sub-multi")])
    tasks.handle_event.apply(args=[payload("sub-multi")])
    assert sorted(Applied.objects.values_list("handler", flat=True)) == ["async", "sync"]
    assert InboxEvent.objects.count() == 2


@override_settings(
    ENSIGN_SUBSCRIBER_MAX_ATTEMPTS=3,
    ENSIGN_SUBSCRIBER_BACKOFF_BASE=0.001,
    ENSIGN_SUBSCRIBER_BACKOFF_MAX=0.001,
)
def test_the_task_retries_then_dead_letters() -> None:
    Switch.objects.create(name="flaky", on=True)
    ensign_handlers.flaky_tries.clear()
    tasks.handle_event.apply(args=[payload("sub-flaky")])
    assert len(ensign_handlers.flaky_tries) == 3
    dead = DeadLetter.objects.get()
    assert (dead.reason, dead.attempts) == (DeadLetterReason.FAILED, 3)
    assert not Applied.objects.exists()


def test_a_retry_naming_a_handler_since_unregistered_dead_letters_its_work() -> None:
    # A retry queued before a deploy renamed the handler: the others it names still run.
    kept = registry.require(f"{ensign_handlers.__name__}.multi_sync")
    second_try = {**payload("sub-multi"), "attempt": 2}
    tasks.handle_event.apply(args=[second_try, [kept.name, "gone"]])
    tasks.handle_event.apply(args=[second_try, [kept.name, "gone"]])  # run again (an outage)

    assert list(Applied.objects.values_list("handler", flat=True)) == ["sync"]
    dead = DeadLetter.objects.get()
    assert (dead.handler, dead.reason, dead.attempts) == ("gone", DeadLetterReason.FAILED, 1)
    assert dead.error == "HandlerNotRegistered: no handler is registered as 'gone'"


@override_settings(
    ENSIGN_SUBSCRIBER_MAX_ATTEMPTS=3,
    ENSIGN_SUBSCRIBER_BACKOFF_BASE=0.001,
    ENSIGN_SUBSCRIBER_BACKOFF_MAX=0.001,
)
def test_retries_through_a_database_outage_do_not_use_up_the_handlers_attempts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    Switch.objects.create(name="flaky", on=True)
    ensign_handlers.flaky_tries.clear()
    attempt = dispatch.attempt
    # More outages than Celery's default of three retries allows.
    outages = [OperationalError("the database is down")] * 4

    def attempt_after_an_outage(*args: Any, **kwargs: Any) -> list[dispatch.HandlerResult]:
        if outages:
            raise outages.pop()
        return attempt(*args, **kwargs)

    monkeypatch.setattr(dispatch, "attempt", attempt_after_an_outage)
    tasks.handle_event.apply(args=[payload("sub-flaky")])

    assert len(ensign_handlers.flaky_tries) == 3  # four retries for the outage, three tries
    assert DeadLetter.objects.get().attempts == 3


def test_the_task_dead_letters_an_unknown_type() -> None:
    tasks.handle_event.apply(args=[payload("sub-typed", type_name="Nope")])
    assert DeadLetter.objects.get().reason == DeadLetterReason.UNKNOWN_TYPE


@override_settings(ENSIGN_SUBSCRIBER_MAX_ATTEMPTS=1)
def test_the_task_retries_when_recording_the_outcome_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    Switch.objects.create(name="flaky", on=True)
    recorded = dispatch.dead_letter
    outages = [OperationalError("server closed the connection unexpectedly")]

    def dead_letter_after_an_outage(*args: Any, **kwargs: Any) -> DeadLetter:
        if outages:
            raise outages.pop()
        return recorded(*args, **kwargs)

    monkeypatch.setattr(dispatch, "dead_letter", dead_letter_after_an_outage)
    result = tasks.handle_event.apply(args=[payload("sub-flaky")])

    assert result.successful()
    assert DeadLetter.objects.get().reason == DeadLetterReason.FAILED


def test_an_error_retries_cannot_fix_dead_letters_the_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken_settle(*args: Any, **kwargs: Any) -> list[Any]:
        raise KeyError("a bug, the same on every try")

    monkeypatch.setattr(dispatch, "settle", broken_settle)
    result = tasks.handle_event.apply(args=[payload("sub-multi")])

    assert result.successful()  # not retried forever
    dead = DeadLetter.objects.get()
    assert (dead.reason, dead.handler) == (DeadLetterReason.FAILED, "")
    assert "KeyError" in dead.error


def test_a_database_error_while_dead_lettering_such_an_event_is_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorded = dispatch.dead_letter
    outages = [OperationalError("server closed the connection unexpectedly")]

    def broken_settle(*args: Any, **kwargs: Any) -> list[Any]:
        raise KeyError("a bug, the same on every try")

    def dead_letter_after_an_outage(*args: Any, **kwargs: Any) -> DeadLetter:
        if outages:
            raise outages.pop()
        return recorded(*args, **kwargs)

    monkeypatch.setattr(dispatch, "settle", broken_settle)
    monkeypatch.setattr(dispatch, "dead_letter", dead_letter_after_an_outage)
    result = tasks.handle_event.apply(args=[payload("sub-multi")])

    assert result.successful()
    assert "KeyError" in DeadLetter.objects.get().error

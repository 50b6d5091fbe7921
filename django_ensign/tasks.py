"""Celery tasks: draining the outbox, and running handlers in ``--celery`` subscriber mode.

Importing this module requires Celery (the ``celery`` extra).
"""

from __future__ import annotations

# === outbox tasks ===========================================================
import dataclasses as _dataclasses
import logging as _logging
from typing import Any as _Any
from typing import cast as _cast

from celery import shared_task as _shared_task

_logger = _logging.getLogger(__name__)

#: Seconds a drain queued by ``ENSIGN_OUTBOX_CELERY_ON_COMMIT`` may wait for a worker.
TRIGGERED_DRAIN_EXPIRES = 5.0

#: A beat schedule entry to copy into ``CELERY_BEAT_SCHEDULE``: drain every 5 seconds.
OUTBOX_BEAT_SCHEDULE: dict[str, dict[str, _Any]] = {
    "django-ensign-publish-outbox": {
        "task": "django_ensign.tasks.publish_outbox",
        "schedule": 5.0,
        "options": {"expires": 5.0},
    }
}


@_shared_task(name="django_ensign.tasks.publish_outbox")  # type: ignore[untyped-decorator]
def publish_outbox(
    batch_size: int | None = None, topics: list[str] | None = None, using: str | None = None
) -> dict[str, int]:
    """Publish the outbox rows due when it starts, then return; skips while a relay of
    every topic or another drain runs. Rows written meanwhile wait for the next drain.

    Relays started with ``--topic`` take no lock, so drains run beside them; a drain given
    ``topics`` takes the lock as any drain does.

    ``using`` defaults to where the router writes outbox rows. Returns the relay's counts,
    or ``{"skipped": 1}`` when the drain lock was taken. While Ensign cannot be reached
    the drain stops early with a warning and returns its counts with ``"unreachable": 1``
    (the rows wait for the next beat, no attempt counted); a relay Ensign refuses
    (credentials, permissions) fails the task.
    """
    from django_ensign import exceptions, locks, relay
    from django_ensign.models import outbox_alias

    using = using or outbox_alias()
    with locks.drain_lock(using) as taken:
        if not taken:
            return {"skipped": 1}
        options = relay.RelayOptions(once=True, using=using, topics=tuple(topics or ()))
        if batch_size:
            options.batch_size = batch_size
        try:
            stats = relay.run(options, handle_signals=False)
        except exceptions.RelayStopped as err:
            # An outage is expected weather for a task beat runs every few seconds: a
            # traceback per run would bury the one that matters.
            if err.refused or not isinstance(err.stats, relay.RelayStats):
                raise
            _logger.warning("outbox drain stopped early: %s", err)
            return {**_dataclasses.asdict(err.stats), "unreachable": 1}
    return _dataclasses.asdict(stats)


# === end outbox tasks =======================================================


# === subscriber tasks =======================================================
@_shared_task(  # type: ignore[untyped-decorator]
    bind=True,
    name="django_ensign.tasks.handle_event",
    acks_late=True,
    # The event is acked to Ensign already: a run that hits its time limit is requeued,
    # not acked away (Celery 5.5 and later: the extra's floor). Few errors reach Celery:
    # see handle_event.
    acks_on_failure_or_timeout=False,
    reject_on_worker_lost=True,
    ignore_result=True,
    # No limit from Celery (its default is 3 retries): outages retry for as long as they
    # last, and the handlers' attempts are counted in the payload.
    max_retries=None,
)
def handle_event(self: _Any, payload: dict[str, _Any], handlers: list[str] | None = None) -> None:
    """Run the handlers of one event (``ensign_subscribe --celery``), retrying with backoff.

    ``handlers`` names the ones still to run on a retry, and the payload's ``attempt``
    which try of theirs it is: Celery's own count also counts the retries of database
    outages, and is only the fallback for a message without it. The inbox makes a task that
    runs twice (a worker lost after the commit, a redelivered event) a no-op. A
    database error outside the handlers (the database down while recording the
    outcome) is retried without limit: the broker's message is the event's only copy.
    Any other error there would fail every retry alike, so the event is dead-lettered
    for a person to replay instead.
    """
    from celery.exceptions import Reject, Retry
    from django.db import DatabaseError

    from django_ensign import dispatch

    try:
        try:
            _handle_event(self, payload, handlers)
        except (Retry, Reject, DatabaseError):
            raise
        except Exception as exc:
            _dead_letter_payload(payload, exc)
    except (Retry, Reject):
        raise
    except DatabaseError as exc:  # also one met while dead-lettering
        # The same try again: an outage uses none of the handlers' attempts.
        again = {**payload, "attempt": _attempt(self, payload)}
        raise _retry_or_requeue(
            self, exc, args=[again, handlers], countdown=dispatch.backoff(self.request.retries + 1)
        ) from exc


def _attempt(task: _Any, payload: dict[str, _Any]) -> int:
    """Which try of the handlers this run is (1 for the first)."""
    return int(payload.get("attempt") or 0) or int(task.request.retries) + 1


def _dead_letter_payload(payload: dict[str, _Any], error: Exception) -> None:
    """Dead-letter the event of ``payload`` after an error retries cannot fix."""
    import traceback

    from django_ensign import dispatch
    from django_ensign.handlers import InboundEvent
    from django_ensign.models import DeadLetterReason

    # A payload that does not even decode fails the task: Celery logs it with its args.
    event = InboundEvent.from_payload(payload)
    dispatch.dead_letter(
        event, reason=DeadLetterReason.FAILED, error=error, traceback=traceback.format_exc()
    )


def _handle_event(task: _Any, payload: dict[str, _Any], handlers: list[str] | None) -> None:
    from django_ensign import dispatch, exceptions
    from django_ensign.conf import settings
    from django_ensign.handlers import InboundEvent, registry

    event = InboundEvent.from_payload(payload)
    number = _attempt(task, payload)
    if handlers is None:
        try:
            entries = dispatch.plan(event)
        except exceptions.DeadLetterNow as exc:
            dispatch.dead_letter_unplannable(event, exc)
            return
    else:
        entries = []
        for name in handlers:
            try:
                entries.append(registry.require(name))
            except exceptions.HandlerNotRegistered as missing:
                _dead_letter_missing(event, name, missing, tried=number - 1)
    limit = max(1, settings.SUBSCRIBER_MAX_ATTEMPTS)
    results = dispatch.attempt(event, entries)
    retry = dispatch.settle(event, results, attempt_number=number, final=number >= limit)
    if retry:
        raise _retry_or_requeue(
            task,
            None,
            args=[{**payload, "attempt": number + 1}, [entry.name for entry in retry]],
            countdown=dispatch.backoff(number),
        )


def _dead_letter_missing(event: _Any, name: str, missing: Exception, *, tried: int) -> None:
    """Dead-letter a handler's work that a retry names after a deploy renamed or removed
    the handler: it waits for a person (a replay once the name is back), not vanishing."""
    from django_ensign import dispatch
    from django_ensign.models import DeadLetter, DeadLetterReason, DeadLetterStatus

    # Once: this run may be an outage's retry of one that got this far.
    key = dispatch.storable_id(event.event_id)
    if not DeadLetter.objects.filter(
        handler=name, event_id=key, status=DeadLetterStatus.DEAD
    ).exists():
        dispatch.dead_letter(
            event, reason=DeadLetterReason.FAILED, error=missing, handler=name, attempts=tried
        )


def _retry_or_requeue(task: _Any, exc: Exception | None, **options: _Any) -> Exception:
    """The exception that retries ``task``; ``Reject(requeue=True)`` when the retry cannot be sent.

    Celery drops a failed late-acked message; requeued, it comes back.
    """
    from celery.exceptions import Reject

    try:
        outcome = task.retry(exc=exc, throw=False, **options)
    except Exception as failure:  # Celery's own Reject(requeue=False) among them
        outcome = Reject(failure, requeue=True)
    return _cast(Exception, outcome)


def enqueue_event(event: _Any) -> None:
    """Queue :func:`handle_event` for an ``InboundEvent``; returns once the broker took it.

    With RabbitMQ set ``broker_transport_options = {"confirm_publish": True}`` so
    "took it" means the broker confirmed it.
    """
    from django_ensign.conf import settings

    options: dict[str, _Any] = {}
    if settings.SUBSCRIBER_CELERY_QUEUE:
        options["queue"] = settings.SUBSCRIBER_CELERY_QUEUE
    handle_event.apply_async(args=[event.to_payload()], **options)


@_shared_task(name="django_ensign.tasks.prune_inbox")  # type: ignore[untyped-decorator]
def prune_inbox(older_than: str = "7d", batch_size: int = 1000, using: str | None = None) -> int:
    """``ensign_prune_inbox`` for beat: delete inbox rows older than ``older_than``.

    Returns how many went. Keep the age past every redelivery window; under an hour
    is refused (see :func:`django_ensign.housekeeping.prune_inbox`).
    """
    from django_ensign import housekeeping
    from django_ensign.pruning import parse_age

    return housekeeping.prune_inbox(parse_age(older_than), batch_size=batch_size, using=using)


# === end subscriber tasks ===================================================

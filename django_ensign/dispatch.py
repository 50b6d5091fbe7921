"""Run the handlers of one event, each in one transaction with its inbox row.

Everything here is synchronous and blocking: the subscriber calls it from worker
threads, the Celery task and ``ensign_replay_dead`` call it directly.

The guarantee: a handler's database work and its ``InboxEvent`` row commit
together or not at all, and the row is unique per (handler, event id), so an
event delivered twice (redelivery, a relay's re-publish, two Celery workers) is
applied once per handler. Async handlers get the same guarantee: they run on an
event loop of their own (``async_to_sync``) inside the transaction's thread, and
Django's async ORM calls made in them run on that thread, inside the transaction.

:func:`attempt_batch` applies several events in one transaction (one commit, the
inbox rows in one INSERT); if any handler raises, all of it rolls back and the
caller tries the events one by one, so only the failing one is retried.

Both open their transaction on the database the inbox is routed to. Before the
commit they check that no handler left the transaction aborted (a database error it
caught without a savepoint), and they wrap the ``on_commit`` hooks handlers register
robust, so one failing hook neither stops the others nor passes for a rollback.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import inspect
import json
import time
import traceback as tb
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from asgiref.sync import async_to_sync
from django.db import IntegrityError, connections, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model
from django.utils import timezone

from django_ensign import backoff as retry_policy
from django_ensign import columns, databases, exceptions, models, servertime, txstate, workerdb
from django_ensign.conf import settings
from django_ensign.handlers import Handler, InboundEvent, registry


class Outcome(enum.Enum):
    """What one try of one handler came to."""

    HANDLED = "handled"
    DUPLICATE = "duplicate"
    FAILED = "failed"


@dataclass(frozen=True)
class HandlerResult:
    """One try of one handler on one event."""

    handler: Handler
    outcome: Outcome
    error: BaseException | None = None
    traceback: str = ""

    @property
    def permanent(self) -> bool:
        """A failure that retrying cannot fix."""
        return isinstance(self.error, exceptions.DeadLetterNow)


def _is_json(mimetype: str) -> bool:
    base = mimetype.split(";")[0].strip().lower()
    return base.endswith("/json") or base.endswith("+json")


def plan(event: InboundEvent) -> list[Handler]:
    """The handlers ``event`` goes to; raises a :class:`~exceptions.DeadLetterNow` if none can.

    ``UndecodableEvent`` when JSON data does not parse, ``UnknownEventType`` when
    no registered handler wants the event's topic, type and mimetype.
    """
    if event.decode_error:
        raise exceptions.UndecodableEvent(f"the event does not decode: {event.decode_error}")
    if _is_json(event.mimetype):
        try:
            json.loads(event.data)
        except ValueError as exc:
            raise exceptions.UndecodableEvent(
                f"{event.mimetype} data does not parse: {exc}"
            ) from exc
    handlers = registry.for_event(event)
    if not handlers:
        kind = event.type_name or "untyped"
        raise exceptions.UnknownEventType(
            f"no handler for {kind} events ({event.mimetype}) on topic {event.topic!r}"
        )
    return handlers


def run_handler(entry: Handler, event: InboundEvent) -> HandlerResult:
    """Try ``entry`` on ``event`` once, in one transaction with its inbox row."""
    alias = inbox_alias()
    connection = connections[alias]
    recorded = False
    try:
        with transaction.atomic(using=alias):
            models.InboxEvent.objects.create(
                handler=entry.name,
                event_id=storable_id(event.event_id),
                topic=_fit(models.InboxEvent, "topic", event.topic),
                type_name=_fit(models.InboxEvent, "type_name", event.type_name),
                server_id=_fit(models.InboxEvent, "server_id", event.server_id),
                committed_at=servertime.stored(event.committed_at),
            )
            recorded = True
            hooks = _HookGuard(connection)
            if entry.is_async:
                async_to_sync(_run_async)(entry, event)
            else:
                _call_sync(entry, event)
            hooks.seal()
            _ensure_committable(connection)
    except IntegrityError as exc:
        if not recorded:
            return HandlerResult(entry, Outcome.DUPLICATE)
        return HandlerResult(entry, Outcome.FAILED, exc, tb.format_exc())
    except Exception as exc:
        return HandlerResult(entry, Outcome.FAILED, exc, tb.format_exc())
    return HandlerResult(entry, Outcome.HANDLED)


def inbox_alias() -> str:
    """The database the inbox is written to: the handlers' transactions open there."""
    return router.db_for_write(models.InboxEvent) or "default"


def storable_id(event_id: str) -> str:
    """``event_id`` as the inbox and dead letters key it: as is, or fitted with a hash.

    The hash is stable, so every delivery of an over-long stable id gets the same key.
    """
    return columns.hashed(
        columns.storable_key(event_id), columns.limit(models.InboxEvent, "event_id")
    )


def _fit(model: type[Model], name: str, value: str) -> str:
    """``value`` made storable and cut to its column, so an event's odd label cannot block
    its rows."""
    return columns.cut(columns.storable(value), columns.limit(model, name))


def _error_line(error: BaseException | str) -> str:
    """The first line of an error (named by its type), as a dead letter stores it."""
    message = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return columns.storable(message.splitlines()[0][:2000]) if message else ""


def _ensure_committable(connection: BaseDatabaseWrapper) -> None:
    """Raise :class:`~exceptions.TransactionAborted` if the transaction can only roll back.

    A handler that caught a database error without a savepoint dooms the transaction;
    leaving ``atomic()`` would then roll back quietly while its events count as handled.
    """
    if txstate.doomed(connection):
        raise exceptions.TransactionAborted(
            "a handler caught a database error and carried on, so its transaction can "
            "only roll back; wrap the statement that may fail in transaction.atomic()"
        )


def _call_sync(entry: Handler, event: InboundEvent) -> None:
    """Call a plain handler; an awaitable it returns is run to its end here."""
    try:
        result = entry.func(event)
    except asyncio.CancelledError as exc:  # its own, out of asyncio.run or async_to_sync
        raise RuntimeError(_CANCELLED) from exc
    if inspect.isawaitable(result):
        # A plain decorator around an async handler: run its coroutine as an async
        # handler's, so its ORM calls come back to this thread and its transaction.
        async_to_sync(_finish)(result)


#: What a handler's own CancelledError becomes: its failure, like any error.
_CANCELLED = "CancelledError: work the handler awaited was cancelled"


async def _run_async(entry: Handler, event: InboundEvent) -> None:
    # The coroutine is made here, on the loop, so none is left unawaited if this never runs.
    await _finish(entry.func(event))


async def _finish(pending: Awaitable[Any]) -> None:
    """Await a handler's coroutine; a CancelledError of its own becomes its failure.

    A handler that awaits work someone cancelled raises CancelledError, which is no
    Exception: uncaught, it ended the batch's task with no ack, nack or dead letter, and
    each redelivery of the batch met it again. Only while this task is itself being
    cancelled (a subscriber's task cancelled, asyncio.run ending) is it a cancellation.
    """
    try:
        await pending
    except asyncio.CancelledError as exc:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        raise RuntimeError(_CANCELLED) from exc


class _HookGuard:
    """Marks the ``on_commit`` hooks handlers register robust.

    Django runs a transaction's hooks after its COMMIT and, for a hook not marked
    robust, stops at the first that raises and raises out of ``atomic()``: the other
    handlers' hooks would never run, and the committed events would be taken for rolled
    back. A robust hook's failure is logged by Django and the others still run.
    """

    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        self.connection = connection
        self.seen = len(connection.run_on_commit)

    def seal(self) -> None:
        """Mark robust the hooks registered since the last call."""
        # Re-read each time: a savepoint rollback replaces the list. Its entries are
        # (savepoint ids, hook, robust) since Django 4.2 (the stubs still say pairs).
        # The hook itself stays as registered: the outbox finds its own by type.
        hooks: list[Any] = self.connection.run_on_commit
        for n in range(min(self.seen, len(hooks)), len(hooks)):
            savepoints, func, robust = hooks[n]
            if not robust:
                hooks[n] = (savepoints, func, True)
        self.seen = len(hooks)


Work = Sequence[tuple[InboundEvent, Sequence[Handler]]]
"""Events in delivery order, each with the handlers :func:`plan` gave it."""
_InboxRow = tuple[str, str, str, str, str, dt.datetime | None, dt.datetime]


def attempt_batch(work: Work) -> list[list[HandlerResult]] | None:
    """Try every event's handlers once, all in one transaction with their inbox rows.

    Returns each event's results (``HANDLED`` or ``DUPLICATE``), or None when
    anything raised: the transaction rolled back and nothing was applied, so the
    caller falls back to :func:`attempt` per event. A key seen twice in ``work``
    (one stable id published twice) is applied at its first occurrence.
    """
    workerdb.refresh_connections()
    alias = inbox_alias()
    connection = connections[alias]
    try:
        with transaction.atomic(using=alias):
            fresh = _record_inbox(work)
            _run_all(
                [
                    (entry, event)
                    for (event, handlers), new in zip(work, fresh, strict=True)
                    for entry, apply in zip(handlers, new, strict=True)
                    if apply
                ],
                _HookGuard(connection),
            )
            _ensure_committable(connection)
    except Exception:
        return None
    finally:
        workerdb.refresh_connections()
    return [
        [
            HandlerResult(entry, Outcome.HANDLED if apply else Outcome.DUPLICATE)
            for entry, apply in zip(handlers, new, strict=True)
        ]
        for (_, handlers), new in zip(work, fresh, strict=True)
    ]


def _record_inbox(work: Work) -> list[list[bool]]:
    """Insert the inbox rows of ``work``; per event and handler, whether its row is new.

    One ``INSERT … ON CONFLICT DO NOTHING RETURNING`` (PostgreSQL, SQLite ≥ 3.35; where
    it fails, the batch goes down the per-event path): the rows it returns are the new
    ones. A row another transaction holds uncommitted makes PostgreSQL wait for it, so
    an event being applied elsewhere right now counts as a duplicate once that commits.
    """
    now = timezone.now()
    event_ids = [storable_id(event.event_id) for event, _ in work]
    rows: dict[tuple[str, str], _InboxRow] = {}
    for (event, handlers), event_id in zip(work, event_ids, strict=True):
        for entry in handlers:
            key = (entry.name, event_id)
            if key not in rows:
                rows[key] = (
                    *key,
                    _fit(models.InboxEvent, "topic", event.topic),
                    _fit(models.InboxEvent, "type_name", event.type_name),
                    _fit(models.InboxEvent, "server_id", event.server_id),
                    servertime.stored(event.committed_at),
                    now,
                )
    inserted = _insert_new(list(rows.values()))
    fresh: list[list[bool]] = []
    for (_, handlers), event_id in zip(work, event_ids, strict=True):
        new: list[bool] = []
        for entry in handlers:
            key = (entry.name, event_id)
            new.append(key in inserted)
            inserted.discard(key)  # a second copy of the key in this batch is a duplicate
        fresh.append(new)
    return fresh


#: Inbox columns in the order of the rows :func:`_record_inbox` builds.
_INBOX_COLUMNS = (
    "handler",
    "event_id",
    "topic",
    "type_name",
    "server_id",
    "committed_at",
    "handled_at",
)
#: Rows per INSERT, well under SQLite's and PostgreSQL's bound-parameter limits.
_INBOX_CHUNK = 500


def _insert_new(rows: list[_InboxRow]) -> set[tuple[str, str]]:
    """Insert inbox ``rows`` unless their (handler, event id) exists; the keys inserted."""
    connection = connections[inbox_alias()]
    quote = connection.ops.quote_name
    meta = models.InboxEvent._meta
    column_of = {field.name: field.column for field in meta.concrete_fields if field.column}
    columns = [quote(column_of[name]) for name in _INBOX_COLUMNS]
    key = f"{columns[0]}, {columns[1]}"
    head = f"INSERT INTO {quote(meta.db_table)} ({', '.join(columns)}) "
    tail = f" ON CONFLICT ({key}) DO NOTHING RETURNING {key}"
    source = _json_rows if connection.vendor == "postgresql" else _values_rows
    inserted: set[tuple[str, str]] = set()
    with connection.cursor() as cursor:
        for start in range(0, len(rows), _INBOX_CHUNK):
            sql, params = source(rows[start : start + _INBOX_CHUNK], connection)
            cursor.execute(head + sql + tail, params)
            inserted.update((str(h), str(e)) for h, e in cursor.fetchall())
    return inserted


def _json_rows(rows: list[_InboxRow], connection: BaseDatabaseWrapper) -> tuple[str, list[Any]]:
    """PostgreSQL: the rows as one JSON document.

    The statement text is the same whatever the batch size and the driver quotes one
    string rather than six parameters a row, which halves the insert's Python time.
    """
    document = [
        (handler, event_id, topic, type_name, server_id, committed and committed.isoformat())
        for handler, event_id, topic, type_name, server_id, committed, _ in rows
    ]
    sql = (
        "SELECT r->>0, r->>1, r->>2, r->>3, r->>4, (r->>5)::timestamptz, %s "
        "FROM json_array_elements(%s::json) AS r"
    )
    return sql, [rows[0][-1], json.dumps(document)]


def _values_rows(rows: list[_InboxRow], connection: BaseDatabaseWrapper) -> tuple[str, list[Any]]:
    """Any other database: a multi-row VALUES list."""
    adapt = connection.ops.adapt_datetimefield_value
    params: list[Any] = []
    for *text, committed, handled in rows:
        params += (*text, adapt(committed), adapt(handled))
    row = "(" + ", ".join(["%s"] * len(_INBOX_COLUMNS)) + ")"
    return "VALUES " + ", ".join([row] * len(rows)), params


def _run_all(calls: Sequence[tuple[Handler, InboundEvent]], hooks: _HookGuard) -> None:
    """Call each handler in order; consecutive async ones share one event loop."""
    waiting: list[tuple[Handler, InboundEvent]] = []
    for entry, event in calls:
        if entry.is_async:
            waiting.append((entry, event))
            continue
        if waiting:
            async_to_sync(_await_each)(waiting, hooks)
            waiting = []
        _call_sync(entry, event)
        hooks.seal()
    if waiting:
        async_to_sync(_await_each)(waiting, hooks)


async def _await_each(calls: Sequence[tuple[Handler, InboundEvent]], hooks: _HookGuard) -> None:
    for entry, event in calls:
        await _finish(entry.func(event))
        # The transaction's thread is parked until this coroutine ends, so the loop's
        # thread may touch its hook list (no query runs here).
        hooks.seal()


def attempt(event: InboundEvent, handlers: Iterable[Handler]) -> list[HandlerResult]:
    """Try each handler once; database connections are refreshed around the batch."""
    workerdb.refresh_connections()
    try:
        return [run_handler(entry, event) for entry in handlers]
    finally:
        workerdb.refresh_connections()


def backoff(attempt_number: int) -> float:
    """Seconds to wait before retry ``attempt_number + 1``: exponential, full jitter (the
    relay's :func:`django_ensign.backoff.delay`, with the subscriber's settings)."""
    return retry_policy.delay(
        attempt_number, base=settings.SUBSCRIBER_BACKOFF_BASE, cap=settings.SUBSCRIBER_BACKOFF_MAX
    )


def dead_letter(
    event: InboundEvent,
    *,
    reason: str,
    error: BaseException | str,
    traceback: str = "",
    handler: str = "",
    attempts: int = 1,
) -> models.DeadLetter:
    """Record ``event`` as dead for ``handler`` (blank: for every handler); idempotent."""
    line, trace = _error_line(error), columns.storable(traceback)
    now = timezone.now()
    dead = models.DeadLetter
    workerdb.refresh_connections()
    try:
        with transaction.atomic(using=router.db_for_write(dead)):
            row, created = dead.objects.select_for_update().get_or_create(
                handler=handler,
                event_id=storable_id(event.event_id),
                defaults={
                    "topic": _fit(dead, "topic", event.topic),
                    "data": event.data,
                    "mimetype": _fit(dead, "mimetype", event.mimetype),
                    "type_name": _fit(dead, "type_name", event.type_name),
                    "type_version": _fit(dead, "type_version", event.type_version),
                    "metadata": {
                        columns.storable(k): columns.storable(v) for k, v in event.metadata.items()
                    },
                    "server_id": _fit(dead, "server_id", event.server_id),
                    "committed_at": servertime.stored(event.committed_at),
                    "reason": reason,
                    "error": line,
                    "traceback": trace,
                    "attempts": attempts,
                    "created": now,
                    "last_failed_at": now,
                },
            )
            if not created:
                row.reason = reason
                row.status = models.DeadLetterStatus.DEAD
                row.error = line
                row.traceback = trace
                row.attempts += attempts
                row.last_failed_at = now
                row.save()
        return row
    finally:
        workerdb.refresh_connections()


def settle(
    event: InboundEvent, results: list[HandlerResult], *, attempt_number: int, final: bool
) -> list[Handler]:
    """Dead-letter what must be, and return the handlers to try again.

    Permanent failures are dead-lettered at once; others once ``final`` is true.
    """
    retry: list[Handler] = []
    for result in results:
        if result.outcome is not Outcome.FAILED:
            continue
        if result.permanent or final:
            reason = (
                models.DeadLetterReason.UNDECODABLE
                if isinstance(result.error, exceptions.UndecodableEvent)
                else models.DeadLetterReason.FAILED
            )
            dead_letter(
                event,
                reason=reason,
                error=result.error or "failed",
                traceback=result.traceback,
                handler=result.handler.name,
                attempts=attempt_number,
            )
        else:
            retry.append(result.handler)
    return retry


def attempt_and_settle(
    event: InboundEvent, handlers: Iterable[Handler], *, attempt_number: int, final: bool
) -> tuple[list[HandlerResult], list[Handler]]:
    """:func:`attempt` then :func:`settle`: one call per try, for one thread hop."""
    results = attempt(event, handlers)
    return results, settle(event, results, attempt_number=attempt_number, final=final)


def dead_letter_unplannable(event: InboundEvent, error: exceptions.DeadLetterNow) -> None:
    """Dead-letter an event :func:`plan` refused, with the matching reason."""
    reason = (
        models.DeadLetterReason.UNDECODABLE
        if isinstance(error, exceptions.UndecodableEvent)
        else models.DeadLetterReason.UNKNOWN_TYPE
    )
    dead_letter(event, reason=reason, error=str(error), attempts=1)


def handle_now(event: InboundEvent, *, max_attempts: int | None = None) -> list[HandlerResult]:
    """Handle ``event`` completely in this thread: retries with blocking sleeps, then dead letters.

    The synchronous path (tests, scripts); the subscriber uses its own async loop.
    Raises :class:`~django_ensign.exceptions.UnsupportedDatabase` when the inbox's
    database is neither PostgreSQL nor SQLite.
    """
    databases.require_supported(inbox_alias())
    try:
        pending = plan(event)
    except exceptions.DeadLetterNow as exc:
        dead_letter_unplannable(event, exc)
        return []
    limit = max_attempts or settings.SUBSCRIBER_MAX_ATTEMPTS
    outcomes: dict[str, HandlerResult] = {}
    for number in range(1, limit + 1):
        results = attempt(event, pending)
        outcomes.update({r.handler.name: r for r in results})
        pending = settle(event, results, attempt_number=number, final=number == limit)
        if not pending:
            break
        time.sleep(backoff(number))
    return list(outcomes.values())


def replay(row: models.DeadLetter) -> bool:
    """Run a dead letter's event again; True (and the row marked replayed) if it was applied.

    An ``UNDECODABLE`` row of no handler (the subscriber's verdict) stays dead, untouched:
    data that did not parse will not now, and where the event itself did not decode the
    row holds its raw bytes, no event's data. A handler's own ``UndecodableEvent`` replays.
    Raises :class:`~django_ensign.exceptions.UnsupportedDatabase`, the row untouched, when
    the inbox's database is neither PostgreSQL nor SQLite.
    """
    databases.require_supported(inbox_alias())
    if not replayable(row):
        return False
    event = event_of(row)
    error: BaseException | str = ""
    trace = ""
    try:
        handlers = [registry.require(row.handler)] if row.handler else plan(event)
    except exceptions.EnsignError as exc:
        error = exc
    else:
        failures = [r for r in attempt(event, handlers) if r.outcome is Outcome.FAILED]
        if failures:
            error, trace = failures[0].error or "failed", failures[0].traceback
    workerdb.refresh_connections()
    if error:
        models.DeadLetter.objects.filter(pk=row.pk).update(
            error=_error_line(error),
            traceback=columns.storable(trace),
            attempts=row.attempts + 1,
            last_failed_at=timezone.now(),
        )
        return False
    models.DeadLetter.objects.filter(pk=row.pk).update(
        status=models.DeadLetterStatus.REPLAYED, replayed_at=timezone.now()
    )
    return True


def replayable(row: models.DeadLetter) -> bool:
    """False for a row :func:`replay` leaves dead as it is: data the subscriber could not
    decode (a handler's own ``UndecodableEvent`` is replayable)."""
    return not (row.reason == models.DeadLetterReason.UNDECODABLE and not row.handler)


def why_still_dead(row: models.DeadLetter) -> str:
    """What to tell a person about a row a replay left dead."""
    if replayable(row):
        return f"still failing: {row.error}"
    return f"not replayable, as its data does not decode: {row.error}"


def event_of(row: models.DeadLetter) -> InboundEvent:
    """The event a dead letter kept."""
    return InboundEvent(
        topic=row.topic,
        event_id=row.event_id,
        data=bytes(row.data),
        mimetype=row.mimetype,
        metadata={str(k): str(v) for k, v in (row.metadata or {}).items()},
        type_name=row.type_name,
        type_version=row.type_version,
        committed_at=row.committed_at,
        server_id=row.server_id,
    )


def replay_all(rows: Iterable[models.DeadLetter]) -> tuple[int, list[models.DeadLetter]]:
    """Replay each dead letter; returns how many were applied and the rows still dead.

    Raises :class:`~django_ensign.exceptions.UnsupportedDatabase` before reading a row
    when the inbox's database is neither PostgreSQL nor SQLite.
    """
    databases.require_supported(inbox_alias())
    replayed = 0
    failed: list[models.DeadLetter] = []
    for row in rows:
        if replay(row):
            replayed += 1
        else:
            # Not the payload and traceback again: what a report of the failure shows.
            row.refresh_from_db(fields=["status", "error", "attempts", "last_failed_at"])
            failed.append(row)
    return replayed, failed

"""All django-ensign errors, under the one root :class:`EnsignError`."""

from __future__ import annotations

from django_ensign.client import exceptions as _sdk
from django_ensign.client.exceptions import *  # noqa: F403  (the SDK's errors are ours too)
from django_ensign.client.exceptions import EnsignError


# === database errors ========================================================
class UnsupportedDatabase(EnsignError):
    """django_ensign's tables cannot live on that database: it runs on PostgreSQL or SQLite.

    Raised where a row would be written, and when a relay or a subscriber starts;
    ``using`` is the database alias. ``manage.py check`` reports it as E014 for the
    databases published models and handlers write to. It is not an
    :class:`OutboxDatabaseError`: the inbox raises it too.
    """

    def __init__(self, message: str, *, using: str) -> None:
        super().__init__(message)
        self.using = using


# === outbox errors ==========================================================
class OutboxError(EnsignError):
    """The outbox could not record or publish an event."""


class OutboxDatabaseError(OutboxError):
    """The outbox row cannot be written on that database alias.

    The row must go through the same connection, inside the same transaction, as the
    change it describes; a database the outbox table does not live on would lose that.
    """

    def __init__(self, message: str | None = None, *, using: str | None = None) -> None:
        super().__init__(message)
        self.using = using


class NotRegistered(OutboxError):
    """That model does not publish events."""


class AlreadyRegistered(OutboxError):
    """That model already publishes events: a model registers once."""


class RelayStopped(OutboxError):
    """The relay could not publish and stopped; its rows wait, no attempt counted.

    Ensign refused its credentials or permissions, or (a ``--once`` run) could not be
    reached. The message says which, and ``refused`` is true for the first: waiting
    cannot help, a person must fix the settings. ``stats`` holds the run's ``RelayStats``.
    """

    def __init__(self, message: str, *, stats: object = None, refused: bool = False) -> None:
        super().__init__(message)
        self.stats = stats
        self.refused = refused


class SaveRolledBack(OutboxError):
    """A published model's save, run in a transaction of its own, had to be rolled back.

    A ``pre_save``/``post_save`` receiver caught a database error inside that
    transaction, so neither the change nor its event was committed.
    """


# === end outbox errors ======================================================


# === subscriber errors ======================================================
class DeadLetterNow(EnsignError):
    """The event cannot be handled, now or later; it is dead-lettered without retries.

    Raise it (or a subclass) from a handler to skip the retries.
    """


class UndecodableEvent(DeadLetterNow):
    """The event's data could not be decoded for its mimetype."""


class UnknownEventType(DeadLetterNow):
    """No handler is registered for the event's type on its topic."""


class HandlerNotRegistered(EnsignError, LookupError):
    """No handler is registered under this name (was it renamed or removed?)."""


class TransactionAborted(EnsignError):
    """A handler caught a database error and went on; its transaction can only roll back.

    Wrap a statement that may fail in ``transaction.atomic()`` (a savepoint) to recover
    from its error inside a handler. The event is retried like any failure.
    """


# === end subscriber errors ==================================================

__all__ = sorted(
    [
        *_sdk.__all__,
        "AlreadyRegistered",
        "DeadLetterNow",
        "HandlerNotRegistered",
        "NotRegistered",
        "OutboxDatabaseError",
        "OutboxError",
        "RelayStopped",
        "SaveRolledBack",
        "TransactionAborted",
        "UndecodableEvent",
        "UnknownEventType",
        "UnsupportedDatabase",
    ]
)

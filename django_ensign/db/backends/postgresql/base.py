"""Django's PostgreSQL backend, with signal-written outbox rows sent in the COMMIT's round trip.

Set ``"ENGINE": "django_ensign.db.backends.postgresql"`` in place of
``"django.db.backends.postgresql"``; nothing else changes. Inside a transaction, the
outbox rows that model signals write are held (:mod:`django_ensign.heldrows`) and go
out with the next statement or, most often, with the COMMIT, so a save that publishes
costs no extra round trip. An error inserting them is raised by the commit, which
then rolls the whole transaction back, and so is an error PostgreSQL aborted the
transaction with earlier, if the caller caught it. ``"ENSIGN_PREPARED_INSERT": True``
in the database's entry sends the rows through a prepared INSERT
(:mod:`django_ensign.db.prepared`).
"""

from __future__ import annotations

import contextlib
from typing import Any

from django.db import DatabaseError, ProgrammingError
from django.db.backends.postgresql import base

from django_ensign import txstate
from django_ensign.db.binding import connection_binds_client_side
from django_ensign.heldrows import HeldRows


class DatabaseWrapper(base.DatabaseWrapper):
    """Django's PostgreSQL ``DatabaseWrapper`` that holds outbox rows until the COMMIT."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ensign_held_rows = HeldRows(self)
        # First in the list, so it runs outside any wrapper that user code adds later.
        self.execute_wrappers.insert(0, self.ensign_held_rows)

    def connect(self) -> None:
        # A connection closed inside atomic() is never rolled back through _rollback.
        self.ensign_held_rows.discard()
        super().connect()

    def _commit(self) -> None:
        if self.connection is not None:
            try:
                self._commit_held_rows()
            except BaseException:
                # A failed COMMIT ends its transaction, in PostgreSQL and in Django's own
                # engine: one left aborted would refuse every later statement, and even
                # set_autocommit(). atomic() rolls back again, which is then a no-op.
                with contextlib.suppress(Exception):
                    self._rollback()
                raise
        super()._commit()  # type: ignore[misc]  # private, so not in django-stubs

    def _commit_held_rows(self) -> None:
        if txstate.doomed(self):
            # PostgreSQL answers COMMIT with a rollback here, and psycopg says nothing.
            # The failure was caught (maybe one of the held rows, sent before a statement
            # of the transaction): raise, instead of returning as if the work and its
            # events were saved.
            raise DatabaseError(
                "the transaction was aborted by an earlier database error that was caught; "
                "nothing was committed"
            )
        if self.ensign_held_rows:
            if connection_binds_client_side(self):
                self.ensign_held_rows.send_with_commit()
            else:
                self.ensign_held_rows.send()

    def _set_autocommit(self, autocommit: bool) -> None:
        if autocommit and self.ensign_held_rows:
            # Django's engine refuses here too (the rows' INSERT would have begun the
            # transaction); going on would send them later under autocommit, committed
            # though the transaction that wrote them never was.
            raise ProgrammingError(
                "can't turn autocommit on: this transaction wrote outbox rows that are not "
                "committed yet; commit or roll back first"
            )
        super()._set_autocommit(autocommit)  # type: ignore[misc]

    def _rollback(self) -> None:
        self.ensign_held_rows.discard()
        super()._rollback()  # type: ignore[misc]

    def _savepoint_rollback(self, sid: str) -> None:
        # Every statement sends the rows held before it, SAVEPOINT included, so the rows
        # still held were written inside the savepoint being rolled back. Dropping them
        # also keeps a row the database would refuse from failing the rollback itself.
        self.ensign_held_rows.discard()
        super()._savepoint_rollback(sid)  # type: ignore[misc]

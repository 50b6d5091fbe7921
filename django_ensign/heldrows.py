"""Outbox rows that wait for their transaction's next statement, or ride its COMMIT.

Used by the ``django_ensign.db.backends.postgresql`` engine. A model save that
publishes would otherwise pay for its outbox row with a round trip of its own; held
instead, the row goes out in the same round trip as the COMMIT. Whatever the
transaction runs first through Django's cursors (a query, a savepoint or its release)
sends the held rows before it, so that statement sees the same database as without
holding; a rollback to a savepoint drops them instead, as they were all written inside it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from django.db.backends.utils import debug_transaction

from django_ensign.db import prepared

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

    from django_ensign.rowwrite import NewRow


class HeldRows:
    """The outbox rows one connection's open transaction has written but not yet sent."""

    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        self._connection = connection
        self._rows: list[NewRow] = []
        self._channel: str | None = None

    def __bool__(self) -> bool:
        return bool(self._rows)

    def hold(self, rows: list[NewRow], channel: str | None) -> None:
        """Keep ``rows`` until the next statement or the COMMIT (NOTIFY ``channel`` then)."""
        self._rows.extend(rows)
        self._channel = channel or self._channel

    def discard(self) -> None:
        """Forget the held rows: their transaction rolled back or their session ended."""
        self._rows = []
        self._channel = None

    def _take(self) -> tuple[list[NewRow], str | None]:
        rows, channel = self._rows, self._channel
        self.discard()
        return rows, channel

    def send(self) -> None:
        """Insert the held rows now, through Django's cursors, in a statement of their own."""
        rows, channel = self._take()
        if not rows:
            return
        try:
            self._insert(rows, channel)
        except BaseException:
            # Not every failure aborts the transaction: an execute wrapper that refuses
            # statements, or an error psycopg raises before sending, leaves it able to
            # commit. The rows go out with the commit then, or die with a rollback. Should
            # the failure come after an INSERT ran (a wrapper that raises once its statement
            # is done), they are written twice with one event id, which consumers
            # deduplicate: a copy too many, rather than an event lost.
            self._rows[:0] = rows
            self._channel = self._channel or channel
            raise

    def _insert(self, rows: list[NewRow], channel: str | None) -> None:
        from django_ensign import rowwrite  # the engine loads before the models it imports

        connection = self._connection
        step = self._step(rows)
        if step is None:
            rowwrite.insert_only(rows, using=connection.alias, channel=channel)
            return
        sql, params = rowwrite.prepared_call(
            rows, connection=connection, channel=channel, step=step
        )
        with self._using_statement(), connection.cursor() as cursor:
            cursor.execute(sql, params)

    def send_with_commit(self) -> None:
        """Insert the held rows and ``COMMIT`` in one round trip.

        The caller makes sure the driver takes several statements in one call and notices
        the transaction ended (psycopg 3 binding parameters client-side). Like Django's own
        COMMIT, this runs on the driver's cursor, below Django's execute wrappers, with
        Django's error translation and query log.
        """
        from django_ensign import rowwrite

        rows, channel = self._take()
        connection = self._connection
        step = self._step(rows)
        using: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
        sent: Iterable[tuple[str, list[Any]]]
        if step is None:
            sent = rowwrite.statements(
                rows, connection=connection, channel=channel, returning=False, then="COMMIT"
            )
        else:
            call = rowwrite.prepared_call(
                rows, connection=connection, channel=channel, step=step, then="COMMIT"
            )
            sent, using = [call], self._using_statement()
        with using, connection.wrap_database_errors, connection.connection.cursor() as cursor:
            for sql, params in sent:
                logged = cursor.mogrify(sql, params) if connection.queries_logged else sql
                with debug_transaction(connection, logged):
                    cursor.execute(sql, params)

    def _step(self, rows: list[NewRow]) -> prepared.Step | None:
        from django_ensign import rowwrite

        if len(rows) > rowwrite.PREPARED_ROWS or not prepared.allowed(self._connection):
            return None
        return prepared.step(self._connection)

    @contextlib.contextmanager
    def _using_statement(self) -> Iterator[None]:
        """Around a call using the prepared statement: tell :mod:`prepared` how it went."""
        try:
            yield
        except BaseException:
            prepared.failed(self._connection)
            raise
        prepared.succeeded(self._connection)

    def __call__(
        self,
        execute: Callable[..., Any],
        sql: str,
        params: Any,
        many: bool,
        context: dict[str, Any],
    ) -> Any:
        """Execute wrapper: send held rows first, so the statement sees them."""
        # A broken transaction refuses the statement anyway (Django raises before running
        # it); sending the rows there would only replace that error with the database's.
        if self._rows and not self._connection.needs_rollback:
            self.send()
        return execute(sql, params, many, context)

"""Django's PostgreSQL backend, with signal-written outbox rows sent in the COMMIT's round trip.

Set ``"ENGINE": "django_ensign.db.backends.postgresql"`` in place of
``"django.db.backends.postgresql"``; nothing else changes. Inside a transaction, the
outbox rows that model signals write are held (:mod:`django_ensign.heldrows`) and go
out with the next statement or, most often, with the COMMIT, so a save that publishes
costs no extra round trip. An error inserting them is raised by the commit, which
then rolls the whole transaction back.
"""

from __future__ import annotations

from typing import Any

from django.db.backends.postgresql import base
from django.db.backends.postgresql.psycopg_any import is_psycopg3

from django_ensign.heldrows import HeldRows


class DatabaseWrapper(base.DatabaseWrapper):
    """Django's PostgreSQL ``DatabaseWrapper`` that holds outbox rows until the COMMIT."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ensign_held_rows = HeldRows(self)
        # First in the list, so it runs outside any wrapper that user code adds later.
        self.execute_wrappers.insert(0, self.ensign_held_rows)
        # psycopg 3 runs several statements in one call when it binds parameters
        # client-side (Django's default), and its commit() then sees no open transaction
        # and sends nothing. psycopg2 would keep believing one is open.
        self._commit_carries_rows = (
            is_psycopg3 and self.settings_dict["OPTIONS"].get("server_side_binding") is not True
        )

    def connect(self) -> None:
        self.ensign_held_rows.discard()  # a new session never inherits an old one's rows
        super().connect()

    def _commit(self) -> None:
        if self.connection is not None and self.ensign_held_rows:
            if self._commit_carries_rows:
                # psycopg's own switch for statements prepared in the session (off
                # behind poolers that do not keep sessions) governs ours too.
                prepared = getattr(self.connection, "prepare_threshold", None) is not None
                self.ensign_held_rows.send_with_commit(prepared=prepared)
            else:
                self.ensign_held_rows.send()
        super()._commit()  # type: ignore[misc]  # private, so not in django-stubs

    def _rollback(self) -> None:
        self.ensign_held_rows.discard()
        super()._rollback()  # type: ignore[misc]

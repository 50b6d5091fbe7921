"""Whether, and when, a database session keeps the outbox row's INSERT prepared.

With ``"ENSIGN_PREPARED_INSERT": True`` in a database's ``DATABASES`` entry, the engine's
commits send a published save's row as ``EXECUTE django_ensign_outbox_row (…)`` of an
INSERT prepared once per session: PostgreSQL then skips parsing, analysing and planning
the INSERT at every commit, which costs more than inserting the row.

Off by default: a SQL ``PREPARE`` lives in the database session, and only the project
knows whether each connection keeps its own session from one transaction to the next.
A pooler in transaction mode does not, and PgBouncer keeps protocol-level prepared
statements across servers but not SQL ones; no setting Django or psycopg has says so.
``DISABLE_SERVER_SIDE_CURSORS`` (Django's marker of such a pooler) and a psycopg pool
that resets the sessions it takes back turn it off even when asked for.

The statement is prepared with a session's second published call, as the first would
pay for the PREPARE without gaining from it (one save per connection, under
``CONN_MAX_AGE = 0``). Every PREPARE first drops the statement if the session has it, in
the same round trip: a pooler may hand over a server session that an earlier client
prepared it in, and a PREPARE stays even when its transaction rolls back, so after a
failed call it may stand, stale, or be gone.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from django_ensign.db.binding import connection_binds_client_side

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

#: The key of a ``DATABASES`` entry that asks for the prepared INSERT.
SETTING = "ENSIGN_PREPARED_INSERT"
#: The statement's name in every session: one per session, never leaked.
NAME = "django_ensign_outbox_row"
#: Drops the statement if the session has it (SQL ``DEALLOCATE`` has no ``IF EXISTS``).
DROP_IF_PRESENT = (
    "DO $$ BEGIN IF EXISTS (SELECT FROM pg_prepared_statements WHERE name = "
    f"'{NAME}') THEN EXECUTE 'DEALLOCATE {NAME}'; END IF; END $$"
)

#: Where :func:`allowed` keeps its answer, on the connection wrapper.
_ANSWER = "_django_ensign_may_prepare"


@dataclass
class _Session:
    calls: int = 0
    prepared: bool = False


#: Keyed by the driver's connection, not Django's wrapper: a pooled session outlives
#: the wrapper's connect() and close().
_sessions: weakref.WeakKeyDictionary[Any, _Session] = weakref.WeakKeyDictionary()


class Step(NamedTuple):
    """What the next call does with the statement."""

    #: DROP_IF_PRESENT and PREPARE before the EXECUTEs.
    prepare: bool


def refusal(connection: BaseDatabaseWrapper) -> str | None:
    """Why this connection's sessions cannot keep the prepared INSERT; None if they can.

    One call must carry several statements, so the PREPARE rides the call that first
    needs it; and the session must last from one transaction to the next.
    """
    if not hasattr(connection, "ensign_held_rows"):
        return "only the django_ensign.db.backends.postgresql engine prepares it"
    if connection.settings_dict.get("DISABLE_SERVER_SIDE_CURSORS"):
        return "DISABLE_SERVER_SIDE_CURSORS marks a pooler whose sessions do not last"
    if not connection_binds_client_side(connection):
        return "it needs psycopg 3 binding parameters client-side (Django's default)"
    pool = connection.settings_dict["OPTIONS"].get("pool")
    if isinstance(pool, dict) and pool.get("reset") is not None:
        return "its psycopg pool resets the sessions it takes back"
    return None


def allowed(connection: BaseDatabaseWrapper) -> bool:
    """Whether this connection asks for the prepared INSERT and can keep it (asked once)."""
    answer: bool | None = connection.__dict__.get(_ANSWER)
    if answer is None:
        answer = bool(connection.settings_dict.get(SETTING)) and refusal(connection) is None
        setattr(connection, _ANSWER, answer)
    return answer


def step(connection: BaseDatabaseWrapper) -> Step | None:
    """How the next published call on this session uses the statement; None: it does not."""
    session = _sessions.get(connection.connection)
    if session is None:
        session = _sessions[connection.connection] = _Session()
    session.calls += 1
    if session.prepared:
        return Step(prepare=False)
    if session.calls < 2:
        return None
    return Step(prepare=True)


def succeeded(connection: BaseDatabaseWrapper) -> None:
    """The call using the statement went through: it stands on the session."""
    _sessions[connection.connection].prepared = True


def failed(connection: BaseDatabaseWrapper) -> None:
    """The call using the statement failed: the next one prepares it afresh."""
    session = _sessions.get(connection.connection) if connection.connection else None
    if session is not None:
        session.prepared = False

"""Which database sessions hold the outbox row's prepared INSERT, and under what name.

The engine's COMMIT sends a published save's row as ``EXECUTE name (…)`` of an INSERT
prepared once per session: PostgreSQL then skips parsing, analysing and planning the
INSERT at every commit, which cost more than inserting the row.

A prepared statement lives in the database session, so it is used only where the
session is the connection's own from one transaction to the next. Django's marker for
a pooler in transaction mode (``DISABLE_SERVER_SIDE_CURSORS``) and psycopg's
(``"prepare_threshold": None`` in ``OPTIONS``) turn it off, and so does a psycopg pool
that resets sessions it takes back (``"reset"`` among the ``pool`` options).

A PREPARE stays in the session even when its transaction rolls back, so after any
failed call the next one prepares afresh under a new name rather than guess.
"""

from __future__ import annotations

import itertools
import weakref
from typing import TYPE_CHECKING, Any

from django_ensign.db.binding import connection_binds_client_side

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

#: Where :func:`allowed` keeps its answer, on the connection wrapper.
_ANSWER = "_django_ensign_may_prepare"

#: The name each driver connection's statement has, once its PREPARE went through.
#: Keyed by the driver's connection, not Django's wrapper: a pooled session outlives
#: the wrapper's connect() and close().
_prepared: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()

#: Names are never reused in a process: a PREPARE whose call failed may still stand.
_numbers = itertools.count(1)


def _allowed(settings_dict: dict[str, Any]) -> bool:
    options = settings_dict["OPTIONS"]
    if settings_dict.get("DISABLE_SERVER_SIDE_CURSORS"):
        return False
    if "prepare_threshold" in options and options["prepare_threshold"] is None:
        return False
    pool = options.get("pool")
    return not (isinstance(pool, dict) and pool.get("reset") is not None)


def allowed(connection: BaseDatabaseWrapper) -> bool:
    """Whether this connection may keep the prepared INSERT (asked once per wrapper).

    Only where one call may carry several statements, so the PREPARE can ride the
    first commit that needs it.
    """
    answer: bool | None = connection.__dict__.get(_ANSWER)
    if answer is None:
        answer = connection_binds_client_side(connection) and _allowed(connection.settings_dict)
        setattr(connection, _ANSWER, answer)
    return answer


def name(connection: BaseDatabaseWrapper) -> tuple[str, bool]:
    """The statement's name on this connection's session, and whether it is prepared yet."""
    known = _prepared.get(connection.connection)
    if known is not None:
        return known, True
    return f"django_ensign_outbox_row_{next(_numbers)}", False


def prepared(connection: BaseDatabaseWrapper, statement: str) -> None:
    """Record that ``statement`` now stands on this connection's session."""
    _prepared[connection.connection] = statement


def forget(connection: BaseDatabaseWrapper) -> None:
    """After a failed call: the next one prepares again, under a new name."""
    if connection.connection is not None:
        _prepared.pop(connection.connection, None)

"""What a PostgreSQL connection's driver lets one ``execute()`` carry.

Kept apart from the engine and the outbox writer so both ask the same question the same
way, and so the engine can ask it before the outbox's models are loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

#: Where :func:`connection_binds_client_side` keeps its answer, on the connection.
_ANSWER = "_django_ensign_binds_client_side"


def _binds_client_side(options: dict[str, Any]) -> bool:
    """Whether psycopg 3 sends this connection's queries with parameters bound client-side.

    Such a query may hold several statements (``INSERT …; NOTIFY …; COMMIT``), runs as
    one implicit transaction under autocommit, and psycopg notices a COMMIT in it.
    Server-side binding takes one statement per call; psycopg2 would not notice the
    COMMIT, so it is not counted either.
    """
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    if not is_psycopg3 or options.get("server_side_binding") is True:
        return False
    import psycopg

    factory = options.get("cursor_factory")
    return factory is None or issubclass(factory, psycopg.ClientCursor)


def connection_binds_client_side(connection: BaseDatabaseWrapper) -> bool:
    """Whether psycopg 3 binds this connection's parameters client-side (False off PostgreSQL).

    Asked once per connection wrapper, by the engine's commit and the outbox writer alike.
    """
    answer: bool | None = connection.__dict__.get(_ANSWER)
    if answer is None:
        options = connection.settings_dict["OPTIONS"]
        answer = connection.vendor == "postgresql" and _binds_client_side(options)
        setattr(connection, _ANSWER, answer)
    return answer

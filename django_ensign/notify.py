"""PostgreSQL LISTEN for the relay: wake up as soon as a transaction that wrote rows commits.

The writers' INSERT carries the NOTIFY (:mod:`django_ensign.rowwrite`), so it
joins their transaction; PostgreSQL delivers it on commit, once per transaction. LISTEN
needs a session of its own, so it does not work through a transaction-pooling proxy such
as pgbouncer in transaction mode; the relay's polling floor still finds every row there, only later.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from django.db import connections

logger = logging.getLogger(__name__)

# Connection options psycopg accepts that are not libpq parameters.
_NOT_LIBPQ = {
    "isolation_level",
    "assume_role",
    "server_side_binding",
    "pool",
    "cursor_factory",
    "prepare_threshold",
    "context",
}


def conninfo(using: str) -> dict[str, Any]:
    """libpq keyword arguments for a new session to the database of ``using``."""
    params = dict(connections[using].get_connection_params())
    return {key: value for key, value in params.items() if key not in _NOT_LIBPQ}


async def listen(using: str, channel: str, wake: Callable[[], None], *, retry: float = 1.0) -> None:
    """Call ``wake`` on every notification on ``channel``; reconnects until cancelled."""
    import psycopg
    from psycopg import sql

    while True:
        try:
            params = await asyncio.to_thread(conninfo, using)
            conn = await psycopg.AsyncConnection.connect(autocommit=True, **params)
            async with conn:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                wake()  # rows committed while we were not listening
                async for _ in conn.notifies():
                    wake()
        except asyncio.CancelledError:
            raise
        except Exception as err:  # the polling floor covers us until we are back
            logger.warning("outbox LISTEN on %r failed (%s); retrying in %ss", channel, err, retry)
            await asyncio.sleep(retry)

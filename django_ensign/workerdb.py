"""Database connections of long-running workers (relay, subscriber).

Django closes a connection at the end of each request when ``CONN_MAX_AGE = 0`` (its
default). A worker is one long unit of work: closing after every claim or event would
open a new PostgreSQL session each time (milliseconds of connection set-up on the
hot path), so workers keep their connections and replace only broken ones.
"""

from __future__ import annotations

from django.db import connections


def refresh_connections() -> None:
    """Close this thread's broken or expired connections before the next unit of work.

    Connections inside an atomic block belong to a caller's transaction and are left
    alone; a positive ``CONN_MAX_AGE`` is honoured as Django honours it.
    """
    for conn in connections.all(initialized_only=True):
        if conn.in_atomic_block:
            continue
        if conn.connection is not None and not conn.settings_dict.get("CONN_MAX_AGE"):
            if conn.errors_occurred:
                if conn.is_usable():
                    conn.errors_occurred = False
                else:
                    conn.close()
            continue
        conn.close_if_unusable_or_obsolete()

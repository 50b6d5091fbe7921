"""The databases django_ensign keeps its tables on: PostgreSQL and SQLite (3.35 on), no other.

The claim, the ack writes, the inbox's batched insert, the drain lock and the clock are
written and tested for those two. On MariaDB the claim fails on every try ("FOR UPDATE OF
is not supported"), so a relay would log and retry for ever, while published saves commit
rows that never go out; MySQL and the others are untested. So every entry point that
writes, claims or handles rows refuses another database up front, with this module's one
message.
"""

from __future__ import annotations

from django.db import connections

from django_ensign import exceptions

#: The ``vendor`` of each database backend django_ensign runs on.
SUPPORTED_VENDORS = frozenset({"postgresql", "sqlite"})
#: The oldest SQLite with ``UPDATE … RETURNING``, which the claim and ``outbox.publish``
#: use; Django 5.2 takes SQLite from 3.31.
MIN_SQLITE = (3, 35)
#: What to call the others (a connection's ``display_name`` would connect to tell MariaDB).
_NAMES = {"mysql": "MySQL or MariaDB", "oracle": "Oracle"}


def unsupported(alias: str) -> str | None:
    """Why django_ensign cannot keep its tables on database ``alias``; None when it can."""
    connection = connections[alias]
    vendor = connection.vendor
    if vendor == "sqlite":
        version = tuple(connection.Database.sqlite_version_info)  # type: ignore[attr-defined]
        if version < MIN_SQLITE:
            return (
                f"database {alias!r} is SQLite {'.'.join(map(str, version))}, and django_ensign "
                f"needs SQLite {'.'.join(map(str, MIN_SQLITE))} or newer (UPDATE … RETURNING)"
            )
    if vendor in SUPPORTED_VENDORS:
        return None
    return (
        f"database {alias!r} is {_NAMES.get(vendor, vendor)}, and django_ensign's outbox and "
        "inbox run on PostgreSQL or SQLite only"
    )


def require_supported(alias: str) -> None:
    """Raise :class:`~django_ensign.exceptions.UnsupportedDatabase` unless ``alias`` is
    PostgreSQL or SQLite."""
    reason = unsupported(alias)
    if reason is not None:
        raise exceptions.UnsupportedDatabase(reason, using=alias)

"""The databases django_ensign keeps its tables on: PostgreSQL and SQLite, no other.

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
#: What to call the others (a connection's ``display_name`` would connect to tell MariaDB).
_NAMES = {"mysql": "MySQL or MariaDB", "oracle": "Oracle"}


def unsupported(alias: str) -> str | None:
    """Why django_ensign cannot keep its tables on database ``alias``; None when it can."""
    vendor = connections[alias].vendor
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

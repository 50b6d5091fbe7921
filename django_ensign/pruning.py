"""Deleting old rows a batch at a time, and reading the age a prune is given ("7d")."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from django.db import connections
from django.db.models import QuerySet

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
#: Ages beyond this name no row (and a cutoff before year 1 cannot be computed).
MAX_AGE = dt.timedelta(days=100 * 366)
#: Rows one DELETE names at most, where the database states no limit of its own
#: (PostgreSQL's is 65,535 parameters with server-side binding).
STATEMENT_ROWS = 10_000


def parse_age(text: str) -> dt.timedelta:
    """``"90s"``, ``"15m"``, ``"12h"``, ``"7d"``, ``"2w"`` → a timedelta; ValueError otherwise."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if not match:
        raise ValueError(
            f"{text!r}: use a number and a unit: s, m (minutes), h, d or w, e.g. 7d, 12h, "
            "30m; a month is no unit, so say 30d"
        )
    too_long = ValueError(f"{text!r} is longer than a hundred years")
    try:
        age = dt.timedelta(**{_UNITS[match[2]]: float(match[1])})
    except OverflowError:
        raise too_long from None
    if age > MAX_AGE:
        raise too_long
    return age


def delete_in_batches(rows: QuerySet[Any], batch_size: int) -> int:
    """Delete ``rows`` (ordered as they should go) ``batch_size`` at a time; returns how many.

    ValueError for a batch size below 1 (it would delete nothing and say so). A batch
    larger than one statement takes is deleted in several.

    Each batch is its own short statement, so a big prune never holds locks (or, on
    PostgreSQL, the xmin horizon) for long on a table the workers write to.
    """
    if batch_size < 1:
        raise ValueError(f"the batch size must be at least 1, got {batch_size}")
    table = rows.model._default_manager.db_manager(rows.db)
    # SQLite builds may take as few as 999 parameters a statement.
    per_statement = connections[rows.db].features.max_query_params or STATEMENT_ROWS
    deleted = 0
    while ids := list(rows.values_list("pk", flat=True)[:batch_size]):
        for start in range(0, len(ids), per_statement):
            count, _ = table.filter(pk__in=ids[start : start + per_statement]).delete()
            deleted += count
    return deleted

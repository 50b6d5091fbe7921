"""Deleting old rows a batch at a time, and reading the age a prune is given ("7d")."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from django.db.models import QuerySet

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(text: str) -> dt.timedelta:
    """``"90s"``, ``"15m"``, ``"12h"``, ``"7d"``, ``"2w"`` → a timedelta; ValueError otherwise."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if not match:
        raise ValueError(f"{text!r}: use a number and a unit, e.g. 7d, 12h, 30m")
    return dt.timedelta(**{_UNITS[match[2]]: float(match[1])})


def delete_in_batches(rows: QuerySet[Any], batch_size: int) -> int:
    """Delete ``rows`` (ordered as they should go) ``batch_size`` at a time; returns how many.

    ValueError for a batch size below 1 (it would delete nothing and say so).

    Each batch is its own short statement, so a big prune never holds locks (or, on
    PostgreSQL, the xmin horizon) for long on a table the workers write to.
    """
    if batch_size < 1:
        raise ValueError(f"the batch size must be at least 1, got {batch_size}")
    table = rows.model._default_manager.db_manager(rows.db)
    deleted = 0
    while ids := list(rows.values_list("pk", flat=True)[:batch_size]):
        count, _ = table.filter(pk__in=ids).delete()
        deleted += count
    return deleted

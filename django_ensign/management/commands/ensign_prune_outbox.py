"""``manage.py ensign_prune_outbox --older-than 7d``: delete old acked outbox rows."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_ensign import housekeeping

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(text: str) -> dt.timedelta:
    """``"90s"``, ``"15m"``, ``"12h"``, ``"7d"``, ``"2w"`` → a timedelta."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if not match:
        raise CommandError(f"--older-than {text!r}: use a number and a unit, e.g. 7d, 12h, 30m")
    return dt.timedelta(**{_UNITS[match[2]]: float(match[1])})


class Command(BaseCommand):
    help = "Delete acked outbox rows acked longer ago than --older-than, in batches."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than", default="7d", help="Age of the ack: 30m, 12h, 7d, 2w (default 7d)."
        )
        parser.add_argument(
            "--batch-size", type=int, default=1000, help="Rows deleted per statement."
        )
        parser.add_argument("--database", default="default", help="The outbox table's alias.")

    def handle(
        self, *args: Any, older_than: str, batch_size: int, database: str, **options: Any
    ) -> None:
        deleted = housekeeping.prune(parse_age(older_than), batch_size=batch_size, using=database)
        self.stdout.write(f"deleted {deleted} acked outbox rows")

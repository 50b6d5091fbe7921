"""What the two prune commands share: their options, the age, the errors and the report."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.management.base import CommandError, CommandParser

from django_ensign.management.base import EnsignCommand, positive_int
from django_ensign.pruning import parse_age


class PruneCommand(EnsignCommand):
    """``--older-than``, ``--batch-size`` and ``--database``; subclasses say what they delete."""

    #: What the report counts, e.g. "inbox rows".
    rows_name = "rows"
    older_than_help = "Age: 30m, 12h, 7d, 2w (default 7d)."
    database_help = "The table's database alias."
    database_default: str | None = "default"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", default="7d", help=self.older_than_help)
        parser.add_argument(
            "--batch-size",
            type=positive_int,
            default=1000,
            help="Rows deleted per batch (one DELETE, or several where the database takes "
            "fewer parameters).",
        )
        parser.add_argument("--database", default=self.database_default, help=self.database_help)

    def prune(self, age: dt.timedelta, batch_size: int, database: Any, **options: Any) -> int:
        """Delete what is older than ``age``; how many rows went. ValueError for bad input."""
        raise NotImplementedError

    def handle(
        self, *args: Any, older_than: str, batch_size: int, database: Any, **options: Any
    ) -> None:
        try:
            age = parse_age(older_than)
        except ValueError as exc:
            raise CommandError(f"--older-than {exc}") from None
        try:
            deleted = self.prune(age, batch_size, database, **options)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if options["verbosity"] >= 1:
            self.stdout.write(f"deleted {deleted} {self.rows_name}")

"""``manage.py ensign_prune_outbox --older-than 7d``: delete old acked outbox rows."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_ensign import housekeeping
from django_ensign.pruning import parse_age


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
        try:
            age = parse_age(older_than)
        except ValueError as exc:
            raise CommandError(f"--older-than {exc}") from None
        try:
            deleted = housekeeping.prune(age, batch_size=batch_size, using=database)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if options["verbosity"] >= 1:
            self.stdout.write(f"deleted {deleted} acked outbox rows")

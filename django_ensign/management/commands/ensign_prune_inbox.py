"""``manage.py ensign_prune_inbox --older-than 7d``: delete old inbox rows."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_ensign import housekeeping
from django_ensign.pruning import parse_age


class Command(BaseCommand):
    help = (
        "Delete inbox rows handled longer ago than --older-than, in batches. An event "
        "redelivered after its inbox row is pruned is applied again, so the age must be "
        "longer than any redelivery window: a consumer group's delivery timeout, how long "
        "an outbox row can stay unacked (relay retries and downtime), a replay from an "
        "earlier position. Ages under 1h are refused without --force. Dead letters are "
        "not pruned: they wait for a person (ensign_replay_dead, the admin)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            default="7d",
            help="Age of the handling: 12h, 7d, 2w (default 7d); keep it past any redelivery.",
        )
        parser.add_argument(
            "--batch-size", type=int, default=1000, help="Rows deleted per statement."
        )
        parser.add_argument(
            "--database", help="The inbox table's alias (default: where the router writes it)."
        )
        parser.add_argument("--force", action="store_true", help="Allow an --older-than under 1h.")

    def handle(
        self,
        *args: Any,
        older_than: str,
        batch_size: int,
        database: str | None,
        force: bool,
        **options: Any,
    ) -> None:
        try:
            age = parse_age(older_than)
        except ValueError as exc:
            raise CommandError(f"--older-than {exc}") from None
        try:
            deleted = housekeeping.prune_inbox(
                age, batch_size=batch_size, using=database, force=force
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if options["verbosity"] >= 1:
            self.stdout.write(f"deleted {deleted} inbox rows")

"""``manage.py ensign_prune_inbox --older-than 7d``: delete old inbox rows."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.management.base import CommandParser

from django_ensign import housekeeping
from django_ensign.management.prune import PruneCommand


class Command(PruneCommand):
    help = (
        "Delete inbox rows handled longer ago than --older-than, in batches. An event "
        "redelivered after its inbox row is pruned is applied again, so the age must be "
        "longer than any redelivery window: a consumer group's delivery timeout, how long "
        "an outbox row can stay unacked (relay retries and downtime), a replay from an "
        "earlier position. Ages under 1h are refused without --force. Dead letters are "
        "not pruned: they wait for a person (ensign_replay_dead, the admin)."
    )

    rows_name = "inbox rows"
    older_than_help = "Age of the handling: 12h, 7d, 2w (default 7d); keep it past any redelivery."
    database_help = "The inbox table's alias (default: where the router writes it)."
    database_default = None

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--force", action="store_true", help="Allow an --older-than under 1h.")

    def prune(self, age: dt.timedelta, batch_size: int, database: Any, **options: Any) -> int:
        return housekeeping.prune_inbox(
            age, batch_size=batch_size, using=database, force=options["force"]
        )

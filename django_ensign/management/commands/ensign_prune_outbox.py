"""``manage.py ensign_prune_outbox --older-than 7d``: delete old acked outbox rows."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django_ensign import housekeeping
from django_ensign.management.prune import PruneCommand


class Command(PruneCommand):
    help = "Delete acked outbox rows acked longer ago than --older-than, in batches."
    rows_name = "acked outbox rows"
    older_than_help = "Age of the ack: 30m, 12h, 7d, 2w (default 7d)."
    database_help = "The outbox table's alias (default: where the router writes outbox rows)."
    database_default = None

    def prune(self, age: dt.timedelta, batch_size: int, database: Any, **options: Any) -> int:
        return housekeeping.prune(age, batch_size=batch_size, using=database)

"""``bench_outbox_stats``: counts per status and the span of ``acked_at``, as JSON."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db.models import Count, Max, Min

from django_ensign.models import OutboxEvent


class Command(BaseCommand):
    help = "Print the outbox's counts per status and first/last acked_at (epoch seconds)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--topic", default=None, help="Only rows of this topic.")

    def handle(self, *args: Any, topic: str | None, **options: Any) -> None:
        rows = OutboxEvent.objects.all()
        if topic:
            rows = rows.filter(topic=topic)
        counts = {s: n for s, n in rows.values_list("status").annotate(n=Count("id"))}
        span = rows.filter(acked_at__isnull=False).aggregate(
            first=Min("acked_at"), last=Max("acked_at")
        )
        self.stdout.write(
            json.dumps(
                {
                    "counts": counts,
                    "first_ack": span["first"].timestamp() if span["first"] else None,
                    "last_ack": span["last"].timestamp() if span["last"] else None,
                }
            )
        )

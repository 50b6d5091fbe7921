"""``bench_inbox_stats``: handled events of a topic and the span of their handling, as JSON."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db.models import Max, Min

from django_ensign.models import DeadLetter, InboxEvent


class Command(BaseCommand):
    help = "Print how many events of a topic the inbox holds and first/last handled_at."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--topic", required=True, help="The topic.")

    def handle(self, *args: Any, topic: str, **options: Any) -> None:
        rows = InboxEvent.objects.filter(topic=topic)
        span = rows.aggregate(first=Min("handled_at"), last=Max("handled_at"))
        self.stdout.write(
            json.dumps(
                {
                    "handled": rows.count(),
                    "dead": DeadLetter.objects.filter(topic=topic).count(),
                    "first": span["first"].timestamp() if span["first"] else None,
                    "last": span["last"].timestamp() if span["last"] else None,
                }
            )
        )

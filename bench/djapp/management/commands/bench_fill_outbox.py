"""``bench_fill_outbox``: write N pending outbox rows of a ~200-byte JSON event."""

from __future__ import annotations

import json
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from bench import frames
from django_ensign import outbox


class Command(BaseCommand):
    help = "Write N pending outbox rows (bulk path, one transaction per chunk); print JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--count", type=int, required=True, help="Rows to write.")
        parser.add_argument("--topic", required=True, help="Topic of every row.")
        parser.add_argument("--chunk", type=int, default=5000, help="Rows per transaction.")

    def handle(self, *args: Any, count: int, topic: str, chunk: int, **options: Any) -> None:
        data = frames.payload()
        started = time.perf_counter()
        for start in range(0, count, chunk):
            messages = [
                outbox.Message(
                    topic,
                    data,
                    "application/json",
                    "BenchReading",
                    "1.0.0",
                    key=str(index),
                )
                for index in range(start, min(count, start + chunk))
            ]
            with transaction.atomic():
                outbox.publish_many(messages)
        seconds = time.perf_counter() - started
        self.stdout.write(json.dumps({"rows": count, "seconds": seconds}))

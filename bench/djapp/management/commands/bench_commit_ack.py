"""``bench_commit_ack``: commit outbox rows at a steady rate; report commit→ack latency.

Each row is written in its own transaction; its commit time is taken right after the
commit returns. Once a relay (running separately) has recorded every ack, the latency of
a row is the server's commit time carried by its Ack (``acked_at``) minus that commit time.
"""

from __future__ import annotations

import json
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from bench import frames
from django_ensign import outbox
from django_ensign.models import OutboxEvent, OutboxStatus


class Command(BaseCommand):
    help = "Commit rows at --rate per second, wait for their acks, print latencies as JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--rate", type=float, required=True, help="Rows per second.")
        parser.add_argument("--count", type=int, required=True, help="Rows to write.")
        parser.add_argument("--topic", required=True, help="Topic of the rows.")
        parser.add_argument("--timeout", type=float, default=120.0, help="Seconds to wait.")

    def handle(
        self, *args: Any, rate: float, count: int, topic: str, timeout: float, **options: Any
    ) -> None:
        data = frames.payload()
        committed: dict[int, float] = {}
        started = time.monotonic()
        for index in range(count):
            delay = started + index / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            with transaction.atomic():
                row = outbox.publish(topic, data, mimetype="application/json", key=str(index))
            committed[row.pk] = time.time()
        wrote = time.monotonic() - started
        deadline = time.monotonic() + timeout
        rows = OutboxEvent.objects.filter(pk__in=list(committed))
        while time.monotonic() < deadline:
            if not rows.exclude(status=OutboxStatus.ACKED).exists():
                break
            time.sleep(0.2)
        acked = {
            pk: at.timestamp()
            for pk, at in rows.filter(status=OutboxStatus.ACKED).values_list("pk", "acked_at")
            if at is not None
        }
        latencies = sorted(acked[pk] - at for pk, at in committed.items() if pk in acked)
        self.stdout.write(
            json.dumps(
                {"rows": count, "acked": len(latencies), "write_s": wrote, "latencies": latencies}
            )
        )

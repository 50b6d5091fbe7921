"""``bench_commit_ack``: commit outbox rows at a steady rate; report commit→ack latency.

Each row is written in its own transaction, by several writer threads (as concurrent
requests would) so the target rate is reached even when one commit takes milliseconds; a
row's commit time is taken right after its commit returns. Once a relay (running
separately) has recorded every ack, the latency of a row is the server's commit time
carried by its Ack (``acked_at``) minus that commit time.
"""

from __future__ import annotations

import json
import math
import threading
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import connection, transaction

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
        parser.add_argument(
            "--writers", type=int, default=0, help="Writer threads (default: one per 100 ev/s)."
        )

    def handle(
        self,
        *args: Any,
        rate: float,
        count: int,
        topic: str,
        timeout: float,
        writers: int,
        **options: Any,
    ) -> None:
        data = frames.payload()
        committed: dict[int, float] = {}
        writers = writers or min(16, max(1, math.ceil(rate / 100)))
        started = time.monotonic()

        def write(first: int) -> None:
            try:
                for index in range(first, count, writers):
                    delay = started + index / rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    with transaction.atomic():
                        row = outbox.publish(
                            topic, data, mimetype="application/json", key=str(index)
                        )
                    committed[row.pk] = time.time()
            finally:
                connection.close()

        threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
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
                {
                    "rows": count,
                    "acked": len(latencies),
                    "write_s": wrote,
                    "writers": writers,
                    "latencies": latencies,
                }
            )
        )

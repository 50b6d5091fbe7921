"""``bench_save_cost``: time model saves with and without a signal-written outbox row."""

from __future__ import annotations

import json
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import models, transaction

from bench.djapp.models import PlainReading, Reading


def _time_saves(model: type[models.Model], count: int, autocommit: bool) -> float:
    """Seconds for ``count`` saves of new instances, each in ``atomic()`` or bare."""
    started = time.perf_counter()
    if autocommit:
        for index in range(count):
            model(sensor=f"bench-{index}", temp=21.5).save()
    else:
        for index in range(count):
            with transaction.atomic():
                model(sensor=f"bench-{index}", temp=21.5).save()
    return time.perf_counter() - started


class Command(BaseCommand):
    help = "Time saves of a plain model and of a published one (outbox row by signal); JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--count", type=int, required=True, help="Saves of each model, per three rounds."
        )
        parser.add_argument("--rounds", type=int, default=9, help="Alternating rounds.")
        parser.add_argument(
            "--autocommit",
            action="store_true",
            help="Save outside atomic(), as a view without ATOMIC_REQUESTS does.",
        )

    def handle(self, *args: Any, count: int, rounds: int, autocommit: bool, **options: Any) -> None:
        _time_saves(PlainReading, min(count, 200), autocommit)  # warm up connections, caches
        _time_saves(Reading, min(count, 200), autocommit)
        # Many short alternating rounds: the machine's commit latency drifts over
        # seconds, and each round's pair sees the same drift.
        each = max(1, count * 3 // rounds)
        plain: list[float] = []
        published: list[float] = []
        for _ in range(rounds):
            plain.append(_time_saves(PlainReading, each, autocommit) / each)
            published.append(_time_saves(Reading, each, autocommit) / each)
        self.stdout.write(
            json.dumps({"saves": each * rounds, "plain": plain, "published": published})
        )

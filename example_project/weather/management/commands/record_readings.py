"""``manage.py record_readings``: record a few readings through the ORM (the demo's input)."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.utils import timezone

from example_project.weather.models import Reading, Units

STATIONS = (
    ("Reykjavik", Units.CELSIUS, 4.0),
    ("Boston", Units.FAHRENHEIT, 58.0),
    ("Singapore", Units.CELSIUS, 30.0),
)


class Command(BaseCommand):
    help = "Record readings for a few stations, then update and delete one, publishing each change."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--count", type=int, default=6, help="Readings to create (default 6).")
        parser.add_argument(
            "--seed",
            type=int,
            default=None,
            help="Seed the random temperatures for a repeatable run.",
        )
        parser.add_argument(
            "--no-changes",
            action="store_true",
            help="Only create readings; skip the update and delete that follow.",
        )

    def handle(
        self, *args: Any, count: int, seed: int | None, no_changes: bool, **options: Any
    ) -> None:
        rng = random.Random(seed)
        now = timezone.now()
        created: list[Reading] = []
        # One transaction: the readings and their outbox rows commit together.
        with transaction.atomic():
            for index in range(count):
                station, units, base = STATIONS[index % len(STATIONS)]
                created.append(
                    Reading.objects.create(
                        station=station,
                        temperature=round(base + rng.uniform(-3, 3), 1),
                        units=units,
                        recorded_at=now - dt.timedelta(minutes=count - index),
                    )
                )
        events = len(created)
        if not no_changes and len(created) >= 2:
            corrected = created[0]
            corrected.temperature = round(corrected.temperature + 0.5, 1)
            corrected.save()
            created[-1].delete()
            events += 2
        self.stdout.write(f"recorded {len(created)} readings ({events} events in the outbox)")

"""``manage.py weather_report``: what the demo did, and a way to wait until it is done."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from django_ensign.models import InboxEvent, OutboxEvent, OutboxStatus
from example_project.weather.models import TOPIC, ReceivedReading, StationSummary

POLL_SECONDS = 0.2


def counts() -> dict[str, int]:
    """Outbox rows of the topic, how many are acked, and how many the handler stored."""
    rows = OutboxEvent.objects.filter(topic=TOPIC)
    ids = list(rows.values_list("event_id", flat=True))
    return {
        "published": len(ids),
        "acked": rows.filter(status=OutboxStatus.ACKED).count(),
        "unfinished": rows.exclude(status__in=[OutboxStatus.ACKED, OutboxStatus.DEAD]).count(),
        "dead": rows.filter(status=OutboxStatus.DEAD).count(),
        "handled": ReceivedReading.objects.filter(event_id__in=ids).count(),
    }


def done(state: dict[str, int], stage: str) -> bool:
    """Whether every outbox row of the topic reached ``stage`` (``acked`` or ``handled``)."""
    if stage == "acked":
        return state["unfinished"] == 0
    return state["unfinished"] == 0 and state["handled"] >= state["acked"]


class Command(BaseCommand):
    help = "Print the weather demo's outbox, inbox and summaries; optionally wait for a stage."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--wait",
            choices=("acked", "handled"),
            default=None,
            help="Wait until every weather event is acked (or acked and handled), then exit.",
        )
        parser.add_argument(
            "--timeout", type=float, default=60.0, help="Seconds --wait waits at most (default 60)."
        )
        parser.add_argument(
            "--quiet", action="store_true", help="With --wait: print nothing, only set the status."
        )

    def handle(
        self, *args: Any, wait: str | None, timeout: float, quiet: bool, **options: Any
    ) -> None:
        if wait:
            deadline = time.monotonic() + timeout
            while not done(state := counts(), wait):
                if time.monotonic() > deadline:
                    raise CommandError(
                        f"not every weather event is {wait} after {timeout:g}s: {state}"
                    )
                time.sleep(POLL_SECONDS)
            if quiet:
                return
        self.report()

    def report(self) -> None:
        """Write the report to stdout."""
        state = counts()
        out = self.stdout.write
        out(f"database: {connection.vendor} {connection.settings_dict['NAME']}")
        out(f"events published to {TOPIC!r}: {state['published']}")
        out(f"acked by the server: {state['acked']} (dead: {state['dead']})")
        for row in OutboxEvent.objects.filter(topic=TOPIC).order_by("id"):
            committed = row.acked_at.isoformat(timespec="milliseconds") if row.acked_at else "-"
            out(f"  {row.event_id}  {row.type_name:<15} {row.status:<9} committed {committed}")
        inbox = InboxEvent.objects.filter(topic=TOPIC, handler="weather").count()
        out(f"handled by the 'weather' handler: {state['handled']} (inbox rows: {inbox})")
        for summary in StationSummary.objects.all():
            mean = "-" if summary.mean_celsius is None else f"{summary.mean_celsius:.1f}°C"
            out(
                f"  {summary.station:<10} {summary.readings} current readings, mean {mean}, "
                f"from {summary.events} events"
            )

"""The weather app's Ensign handler, found by ``django_ensign`` at start-up.

The subscriber runs it in one transaction with its inbox row, so each event is
applied once; the unique ``event_id`` on ``ReceivedReading`` says the same thing
in this app's own schema.
"""

from __future__ import annotations

from django.utils.dateparse import parse_datetime

import django_ensign
from django_ensign.handlers import InboundEvent
from example_project.weather import summaries
from example_project.weather.models import TOPIC, ReceivedReading


@django_ensign.handler(TOPIC, name="weather")
def weather(event: InboundEvent) -> None:
    """Store the reading the event describes and refresh its station's summary."""
    data = event.json()
    recorded_at = parse_datetime(str(data["recorded_at"]))
    if recorded_at is None:
        raise ValueError(f"recorded_at {data['recorded_at']!r} is not a datetime")
    row, created = ReceivedReading.objects.get_or_create(
        event_id=event.event_id,
        defaults={
            "type_name": event.type_name,
            "reading_id": int(data["id"]),
            "station": str(data["station"]),
            "temperature": float(data["temperature"]),
            "units": str(data["units"]),
            "recorded_at": recorded_at,
            "committed_at": event.committed_at,
        },
    )
    if not created:
        return
    # A reading that moved station changes the summary of the station it left too.
    stations = set(
        ReceivedReading.objects.filter(reading_id=row.reading_id).values_list("station", flat=True)
    )
    for station in sorted(stations):
        summaries.rebuild(station)

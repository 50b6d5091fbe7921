"""Per-station summaries rebuilt from the events received.

A summary is recomputed from ``ReceivedReading`` rows rather than nudged by each
event, so it comes out the same whatever order concurrent handlers apply events
in: for each reading the latest event wins (the outbox publishes one reading's
events in commit order, so the server's commit times order them).
"""

from __future__ import annotations

from collections.abc import Iterable

from example_project.weather.models import ReceivedReading, StationSummary, to_celsius


def latest_per_reading(reading_ids: Iterable[int]) -> dict[int, ReceivedReading]:
    """The most recent event of each reading, by commit time then arrival."""
    latest: dict[int, ReceivedReading] = {}
    rows = ReceivedReading.objects.filter(reading_id__in=set(reading_ids)).order_by(
        "committed_at", "id"
    )
    for row in rows:
        latest[row.reading_id] = row
    return latest


def rebuild(station: str) -> StationSummary:
    """Recompute ``station``'s summary from every event received that concerns it."""
    # Lock first: under READ COMMITTED the reads below then see what a concurrent
    # handler of the same station committed while we waited.
    summary, _ = StationSummary.objects.select_for_update().get_or_create(station=station)
    ids = ReceivedReading.objects.filter(station=station).values_list("reading_id", flat=True)
    current = [
        row
        for row in latest_per_reading(ids).values()
        if row.station == station and not row.deleted
    ]
    celsius = [round(to_celsius(row.temperature, row.units), 2) for row in current]
    newest = max(current, key=lambda row: (row.recorded_at, row.reading_id), default=None)
    summary.readings = len(current)
    summary.min_celsius = min(celsius, default=None)
    summary.max_celsius = max(celsius, default=None)
    summary.mean_celsius = round(sum(celsius) / len(celsius), 2) if celsius else None
    summary.latest_celsius = (
        round(to_celsius(newest.temperature, newest.units), 2) if newest else None
    )
    summary.latest_recorded_at = newest.recorded_at if newest else None
    summary.events = ReceivedReading.objects.filter(station=station).count()
    summary.save()
    return summary

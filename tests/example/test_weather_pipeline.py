"""The example project end to end: readings saved in Django come back through Ensign, once each.

Every step is the real command a user runs (``record_readings``,
``ensign_publish_outbox``, ``ensign_subscribe``, ``weather_report``) against a real
embedded server, on SQLite and, through ``DATABASE_URL``, on PostgreSQL.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.example.conftest import ExampleProject

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

SNAPSHOT = """
import json
from django_ensign.models import InboxEvent, OutboxEvent
from example_project.weather.models import Reading, ReceivedReading, StationSummary, to_celsius
print(json.dumps({
    "outbox": [[r.event_id, r.status, r.acked_at is not None] for r in OutboxEvent.objects.all()],
    "received": [r.event_id for r in ReceivedReading.objects.all()],
    "inbox": InboxEvent.objects.filter(handler="weather").count(),
    "readings": [
        [r.station, round(to_celsius(r.temperature, r.units), 2)] for r in Reading.objects.all()
    ],
    "summaries": {s.station: [s.readings, s.mean_celsius] for s in StationSummary.objects.all()},
}))
"""


def snapshot(example: ExampleProject) -> dict[str, Any]:
    """The example's tables, as plain data."""
    result: dict[str, Any] = json.loads(example.manage("shell", "-v", "0", "-c", SNAPSHOT).stdout)
    return result


def expected_summaries(readings: list[list[Any]]) -> dict[str, list[Any]]:
    """Per station: how many readings exist and their mean in °C, from the Reading table."""
    by_station: dict[str, list[float]] = {}
    for station, celsius in readings:
        by_station.setdefault(station, []).append(celsius)
    return {
        station: [len(values), round(sum(values) / len(values), 2)]
        for station, values in by_station.items()
    }


def assert_summaries_match(state: dict[str, Any]) -> None:
    """The handler's summaries agree with the Reading table (means to the rounding)."""
    expected = expected_summaries(state["readings"])
    assert sorted(state["summaries"]) == sorted(expected)
    for station, (count, mean) in state["summaries"].items():
        assert count == expected[station][0]
        assert mean == pytest.approx(expected[station][1], abs=0.011)


def publish_and_handle(example: ExampleProject, *subscribe_args: str) -> str:
    """Relay until acked, subscribe until handled; the subscriber's output."""
    example.manage("ensign_publish_outbox", "--once")
    example.manage("weather_report", "--wait", "acked", "--timeout", "30", "--quiet")
    subscriber = example.start("ensign_subscribe", "weather", *subscribe_args)
    example.manage("weather_report", "--wait", "handled", "--timeout", "60", "--quiet")
    return example.stop(subscriber)


def test_saved_readings_are_acked_handled_once_and_summarised(example: ExampleProject) -> None:
    recorded = example.manage("record_readings", "--seed", "7")
    assert "recorded 6 readings (8 events in the outbox)" in recorded.stdout

    publish_and_handle(example)

    state = snapshot(example)
    outbox_ids = sorted(event_id for event_id, _, _ in state["outbox"])
    assert len(outbox_ids) == 8
    assert all(status == "acked" and committed for _, status, committed in state["outbox"])
    assert sorted(state["received"]) == outbox_ids
    assert state["inbox"] == 8
    # Five readings are left (one was deleted), one of them corrected by an update.
    assert len(state["readings"]) == 5
    assert_summaries_match(state)

    report = example.manage("weather_report").stdout
    assert "events published to 'weather': 8" in report
    assert "acked by the server: 8 (dead: 0)" in report
    assert "handled by the 'weather' handler: 8 (inbox rows: 8)" in report


# Deduplication is the inbox's (tested on both databases there); SQLite is enough here.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_replaying_the_whole_topic_changes_nothing(example: ExampleProject) -> None:
    example.manage("record_readings", "--seed", "11")
    publish_and_handle(example)
    before = snapshot(example)

    # A subscriber without a group replays every stored event; one at a time, so
    # the new reading recorded afterwards is handled last.
    replay = example.start("ensign_subscribe", "weather", "--no-group", "--concurrency", "1")
    example.manage("record_readings", "--count", "1", "--no-changes", "--seed", "12")
    example.manage("ensign_publish_outbox", "--once")
    example.manage("weather_report", "--wait", "handled", "--timeout", "60", "--quiet")
    output = example.stop(replay)

    after = snapshot(example)
    assert "duplicates 8" in output
    assert len(after["received"]) == len(before["received"]) + 1 == 9
    assert after["inbox"] == 9
    assert_summaries_match(after)

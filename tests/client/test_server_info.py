"""status() and info() against the real embedded server."""

from __future__ import annotations

from collections.abc import Callable

from django_ensign.client import Ensign, Event, ServiceStatus


async def test_status_needs_no_token(client: Ensign) -> None:
    status = await client.status()
    assert status.status == ServiceStatus.HEALTHY
    assert status.version
    assert status.uptime.total_seconds() >= 0
    assert client._connection.tokens._tokens is None  # no login happened


async def test_info_counts_events_per_topic(client: Ensign, topic_name: Callable[[], str]) -> None:
    topic = topic_name()
    topic_id = await client.create_topic(topic)
    await client.publish(topic, [Event(b"abc", "text/plain", schema_name="Note") for _ in range(4)])
    await client.flush(timeout=10)
    info = await client.info([topic])
    assert info.events == 4
    assert info.num_topics >= 1
    (stats,) = info.topics
    assert (stats.topic_id, stats.events) == (topic_id, 4)
    assert [(t.type_name, t.mimetype, t.events) for t in stats.types] == [("Note", "text/plain", 4)]
    everything = await client.info()
    assert everything.events >= 4

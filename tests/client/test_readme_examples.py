"""The official SDK's README examples run with only the import line changed."""

from __future__ import annotations

from datetime import datetime

import pytest

from django_ensign.client import Ack, Ensign, Event, Nack
from tests.support.server import EmbeddedServer


async def test_readme_examples(
    ensign_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in ensign_server.client_env().items():
        monkeypatch.setenv(key, value)
    printed: list[str] = []

    client = Ensign()
    await client.ensure_topic_exists("weather")
    subscription = client.subscribe("weather")
    await subscription.open()

    event = Event(b'{"temp": 72, "units": "fahrenheit"}', "application/json")
    event1 = Event(b'{"temp": 73, "units": "fahrenheit"}', "application/json")
    event2 = Event(b'{"temp": 74, "units": "fahrenheit"}', "application/json")
    await client.publish("weather", event)
    await client.publish("weather", event1, event2)
    await client.publish("weather", [Event(b"{}"), Event(b"{}")])
    await client.flush()
    ack = await event.wait_for_ack()
    printed.append(str(ack))
    assert isinstance(ack, Ack)

    async for received in subscription:
        printed.append(f"Received event with data: {received.data!r}")
        await received.ack()
        break

    async def handle_ack(ack: Ack) -> None:
        ts = datetime.fromtimestamp(ack.committed.seconds + ack.committed.nanos / 1e9)
        printed.append(f"Event committed at {ts}")

    async def handle_nack(nack: Nack) -> None:
        printed.append(f"Could not commit event {nack.id!r} with error {nack.code}: {nack.error}")

    last = Event(b'{"temp": 75, "units": "fahrenheit"}', "application/json")
    await client.publish("weather", last, on_ack=handle_ack, on_nack=handle_nack)
    await client.close()
    assert printed[1] == 'Received event with data: b\'{"temp": 72, "units": "fahrenheit"}\''
    assert printed[-1].startswith("Event committed at ")

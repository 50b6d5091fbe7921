"""A server without django-ensign's extension, as Ensign's own: it receives gRPC's default
4 MiB per message, and a longer one ends the stream instead of drawing a nack.

Ensign's server is not on this machine, so a minimal in-process servicer with gRPC's
default limits plays it.
"""

from __future__ import annotations

import asyncio

from django_ensign.client import Ack, Event, Nack
from django_ensign.client.events import NackCode, encode_event, new_local_id
from django_ensign.client.framing import STOCK_MAX_MESSAGE_BYTES
from tests.support.inprocess import AcksEvents, client_of, serving

TOPIC_ID = b"\x02" * 16
#: A topic the client knows and the server's streams do not list (made after they opened).
NEW_TOPIC_ID = b"\x03" * 16
#: Under the 5,243,000 bytes Ensign nacks, over the message gRPC lets it receive.
LONG = STOCK_MAX_MESSAGE_BYTES + 100_000


async def test_an_event_longer_than_the_server_receives_is_nacked_and_the_rest_go_out() -> None:
    servicer = AcksEvents({"t": TOPIC_ID})  # type: ignore[abstract]
    async with serving(servicer) as port:
        client = client_of(port, {"t": TOPIC_ID}, ack_timeout=30.0)
        before, long, after = Event(b"a"), Event(b"x" * LONG), Event(b"b")
        await client.publish("t", before, long, after)
        outcomes = await asyncio.wait_for(
            asyncio.gather(*(e.wait_for_ack() for e in (before, long, after))), 20
        )
        await client.close()
    assert [type(o) for o in outcomes] == [Ack, Nack, Ack]
    nack = outcomes[1]
    assert isinstance(nack, Nack)
    assert nack.code == NackCode.MAX_EVENT_SIZE_EXCEEDED
    assert "4,194,304 bytes" in nack.error
    assert servicer.acked == [before.local_id, after.local_id]
    assert servicer.streams == 1  # the stream stayed up


async def test_encoded_events_longer_than_the_server_receives_are_nacked() -> None:
    """The outbox relay's path: it marks such a row dead on the nack's code."""
    servicer = AcksEvents({"t": TOPIC_ID})  # type: ignore[abstract]
    sizes = [10, LONG, 10, LONG, LONG, 10]
    pairs = [
        (new_local_id(), encode_event(b"x" * size, "application/octet-stream", "B", "1.0.0"))
        for size in sizes
    ]
    outcomes: dict[bytes, Ack | Nack] = {}
    done = asyncio.Event()

    def settled(outcome: Ack | Nack) -> None:
        outcomes[outcome.id] = outcome
        if len(outcomes) == len(pairs):
            done.set()

    async with serving(servicer) as port:
        client = client_of(port, {"t": TOPIC_ID}, ack_timeout=30.0)
        await client.publish_encoded("t", pairs, on_ack=settled, on_nack=settled)
        await asyncio.wait_for(done.wait(), 20)
        await client.close()
    codes = [o.code if isinstance(o, Nack) else "ack" for o in (outcomes[i] for i, _ in pairs)]
    assert codes == ["ack", 1, "ack", 1, 1, "ack"]
    assert servicer.acked == [pairs[0][0], pairs[2][0], pairs[5][0]]
    assert servicer.streams == 1


async def test_a_long_event_followed_by_one_for_a_topic_the_stream_lacks_is_still_nacked() -> None:
    servicer = AcksEvents({"t": TOPIC_ID})  # type: ignore[abstract]
    async with serving(servicer) as port:
        client = client_of(port, {"t": TOPIC_ID, "new": NEW_TOPIC_ID}, ack_timeout=30.0)
        long, fresh = Event(b"x" * LONG), Event(b"b")
        # Queued together, before the writer's next turn.
        await asyncio.gather(client.publish("t", long), client.publish("new", fresh))
        outcomes = await asyncio.wait_for(
            asyncio.gather(long.wait_for_ack(), fresh.wait_for_ack()), 20
        )
        await client.close()
    assert [type(o) for o in outcomes] == [Nack, Ack]
    assert servicer.acked == [fresh.local_id]

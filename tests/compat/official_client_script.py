"""Run by the official Ensign SDK (pyensign) in its own virtualenv, against our server.

Prints one JSON line describing what it saw; the test asserts on it. This file
must not import django_ensign: it stands for an existing, unmodified Ensign client.
"""

import asyncio
import json
import os
import sys

from pyensign.api.v1beta1.groups_pb2 import ConsumerGroup
from pyensign.ensign import Ensign
from pyensign.events import Event


async def main(topic: str, count: int) -> dict:
    # pyensign reads only the credentials from the environment; the endpoint and
    # auth URL are constructor arguments.
    client = Ensign(
        endpoint=os.environ["ENSIGN_ENDPOINT"],
        auth_url=os.environ["ENSIGN_AUTH_URL"],
        insecure=True,
    )
    seen = {}
    status = await client.status()
    seen["status"] = str(status)
    await client.ensure_topic_exists(topic)
    seen["exists"] = await client.topic_exists(topic)

    acks, nacks = [], []

    async def on_ack(ack):
        acks.append(ack.committed.seconds)

    async def on_nack(nack):
        nacks.append(nack.code)

    events = [Event(json.dumps({"n": n}).encode(), "application/json") for n in range(count)]
    await client.publish(topic, events, on_ack=on_ack, on_nack=on_nack)
    for event in events:
        await event.wait_for_ack()
    seen["acked"] = sum(1 for e in events if e.acked())
    seen["committed_positive"] = all(seconds > 0 for seconds in acks)
    seen["nacks"] = nacks

    group = ConsumerGroup(name="official-sdk-compat")
    received = []

    async def consume():
        async for event in client.subscribe(topic, consumer_group=group):
            received.append(json.loads(event.data)["n"])
            await event.ack()
            if len(received) == count:
                return

    await asyncio.wait_for(consume(), timeout=30)
    seen["subscribed"] = sorted(received)

    cursor = await client.query(f"SELECT * FROM {topic}")
    rows = await cursor.fetchall()
    seen["queried"] = sorted(json.loads(event.data)["n"] for event in rows)
    await client.close()
    return seen


if __name__ == "__main__":
    result = asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    print(json.dumps(result))

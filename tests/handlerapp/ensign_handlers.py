"""Handlers of the subscription tests; each topic prefix belongs to one test scenario."""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

from django_ensign import handler
from django_ensign.handlers import InboundEvent
from tests.handlerapp.models import Applied, Switch

#: Tries of the flaky handler in this process (its database work rolls back, so count here).
flaky_tries: list[str] = []
_lock = threading.Lock()


def _apply(name: str, event: InboundEvent) -> None:
    Applied.objects.create(
        handler=name, event_id=event.event_id, topic=event.topic, value=event.data.decode()
    )


@handler("sub-multi")
def multi_sync(event: InboundEvent) -> None:
    _apply("sync", event)


@handler("sub-multi")
async def multi_async(event: InboundEvent) -> None:
    await Applied.objects.acreate(
        handler="async", event_id=event.event_id, topic=event.topic, value=event.data.decode()
    )


@handler("sub-typed", type_name="Reading")
def reading(event: InboundEvent) -> None:
    _apply("reading", event)


@handler("sub-typed", type_name="Alert", mimetype="application/json")
def alert(event: InboundEvent) -> None:
    _apply(f"alert:{event.json()['level']}", event)


@handler("sub-flaky")
def flaky(event: InboundEvent) -> None:
    _apply("flaky", event)
    with _lock:
        flaky_tries.append(event.event_id)
    if Switch.is_on("flaky"):
        raise RuntimeError("the flaky handler is failing on purpose")


@handler("sub-async-fail")
async def async_fail(event: InboundEvent) -> None:
    await Applied.objects.acreate(handler="async-fail", event_id=event.event_id, topic=event.topic)
    raise RuntimeError("async handler fails after writing")


@handler("sub-bulk")
def bulk(event: InboundEvent) -> None:
    _apply("bulk", event)


@handler("sub-slow")
def slow(event: InboundEvent) -> None:
    """Says it started (a file), then waits for the lock the test holds, to test draining."""
    _apply("slow", event)
    gate = os.environ.get("ENSIGN_TEST_GATE")
    if gate:
        Path(f"{gate}.started").write_text(event.event_id)
        with open(gate, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            fcntl.flock(fh, fcntl.LOCK_UN)


@handler("sub-celery")
def celery_handler(event: InboundEvent) -> None:
    _apply("celery", event)

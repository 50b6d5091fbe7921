"""Handlers of the subscription tests; each topic prefix belongs to one test scenario."""

from __future__ import annotations

import asyncio
import fcntl
import functools
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.db import IntegrityError, connection, transaction

from django_ensign import handler, outbox
from django_ensign.exceptions import UndecodableEvent
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


@handler("sub-first-fails")
def first_fails(event: InboundEvent) -> None:
    """Fails on the event with ``n == 0`` while the ``first`` switch is on."""
    if event.json()["n"] == 0 and Switch.is_on("first"):
        raise RuntimeError("the first event fails on purpose")
    _apply("first", event)


@handler("sub-publishes")
def publishes(event: InboundEvent) -> None:
    """Publishes an event of its own through the outbox, as a projection might."""
    outbox.publish("sub-published", {"from": event.event_id})


@handler("sub-async-fail")
async def async_fail(event: InboundEvent) -> None:
    await Applied.objects.acreate(handler="async-fail", event_id=event.event_id, topic=event.topic)
    raise RuntimeError("async handler fails after writing")


@handler("sub-bulk")
def bulk(event: InboundEvent) -> None:
    _apply("bulk", event)


#: Set when the hanging handler is waiting (tests cancel the subscriber then).
hanging = threading.Event()


@handler("sub-hangs")
async def hangs(event: InboundEvent) -> None:
    """Writes, then waits for ever: only cancelling the subscriber ends it."""
    await Applied.objects.acreate(handler="hangs", event_id=event.event_id, topic=event.topic)
    hanging.set()
    await asyncio.sleep(3600)


@handler("sub-rejects")
def rejects(event: InboundEvent) -> None:
    """Refuses the event as undecodable while the ``rejects`` switch is on."""
    if Switch.is_on("rejects"):
        raise UndecodableEvent("this handler cannot read the event yet")
    _apply("rejects", event)


@handler("sub-cancelled-sync")
def runs_cancelled_work(event: InboundEvent) -> None:
    """A plain handler running async work of its own that gets cancelled."""
    _apply("cancelled-sync", event)

    async def cancelled() -> None:
        work = asyncio.ensure_future(asyncio.sleep(3600))
        work.cancel()
        await work

    asyncio.run(cancelled())


@handler("sub-cancelled")
async def awaits_cancelled_work(event: InboundEvent) -> None:
    """Writes, then awaits work that was cancelled: CancelledError (a BaseException) comes out."""
    await Applied.objects.acreate(handler="cancelled", event_id=event.event_id, topic=event.topic)
    work = asyncio.ensure_future(asyncio.sleep(3600))
    work.cancel()
    await work


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


def _logged(func: Callable[[InboundEvent], Any]) -> Callable[[InboundEvent], Any]:
    """A plain decorator: it returns whatever the handler returns (here a coroutine)."""

    @functools.wraps(func)
    def wrapper(event: InboundEvent) -> Any:
        return func(event)

    return wrapper


@handler("sub-wrapped-async")
@_logged
async def wrapped_async(event: InboundEvent) -> None:
    await Applied.objects.acreate(handler="wrapped", event_id=event.event_id, topic=event.topic)
    if event.json().get("fail"):
        raise RuntimeError("the wrapped async handler fails after writing")


class Projector:
    """A handler object whose ``__call__`` is ``async``."""

    async def __call__(self, event: InboundEvent) -> None:
        await Applied.objects.acreate(
            handler="projector", event_id=event.event_id, topic=event.topic
        )
        if event.json().get("fail"):
            raise RuntimeError("the projector fails after writing")


handler("sub-callable-async", name="tests.handlerapp.projector")(Projector())


@handler("sub-sloppy")
def sloppy(event: InboundEvent) -> None:
    """Swallows an IntegrityError without a savepoint (the test makes the name taken)."""
    try:
        if event.json().get("raw"):
            with connection.cursor() as cursor:
                table = Switch._meta.db_table
                cursor.execute(f'INSERT INTO {table} (name, "on") VALUES (%s, %s)', ["taken", True])
        else:
            Switch.objects.create(name="taken")
    except IntegrityError:
        pass


#: Events whose ``on_commit`` hook ran, in this process.
hook_runs: list[str] = []


@handler("sub-hooks")
def with_hook(event: InboundEvent) -> None:
    """Writes, and registers a hook that raises when the event says so."""
    _apply("hooks", event)

    def after_commit() -> None:
        if event.json().get("fail_hook"):
            raise RuntimeError("the mail server is down")
        hook_runs.append(event.event_id)

    transaction.on_commit(after_commit)

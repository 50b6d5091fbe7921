"""A blocking facade over :class:`Ensign` for Django views, shells and commands.

The async client runs on one event loop in a daemon thread owned by the facade, so its
publish stream, in-flight window and subscriptions outlive each call, and a call made
from a thread whose own loop is running (a Django async view) blocks that thread without
deadlocking: the work happens on the facade's loop. (asgiref's ``async_to_sync`` refuses
to run in a thread with a running loop and starts a fresh loop per call, which would
close the publish stream after every call.) Plain ``on_ack``/``on_nack`` callbacks run
through asgiref's ``sync_to_async`` so ORM code in them never runs on the client's loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import threading
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from asgiref.sync import sync_to_async

from django_ensign.client import exceptions
from django_ensign.client.deadline import SendDeadline
from django_ensign.client.ensign import Ensign
from django_ensign.client.events import Event, NackCode, Outcome, ReceivedEvent
from django_ensign.client.publisher import Callback
from django_ensign.client.query import ParamValue
from django_ensign.client.status import ProjectInfo, ServerStatus
from django_ensign.client.subscriber import Subscription
from django_ensign.client.topics import Topic, TopicState

T = TypeVar("T")


class _LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._main, name="ensign-client", daemon=True)
        self.thread.start()
        self._ready.wait()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None) -> T:
        if threading.current_thread() is self.thread:
            coro.close()
            raise exceptions.EnsignError(
                "the sync client was called from its own event loop; await the Ensign client"
            )
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            # Not cancelled: a publish cut halfway would leave some events unsent and
            # unreported, and an ack cut in its write would end the stream.
            raise exceptions.CallTimeout(
                f"the call did not finish within {timeout} seconds; it goes on in the background"
            ) from None

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5.0)
        if not self.thread.is_alive():
            self.loop.close()


def _async_callback(callback: Callback | None) -> Callback | None:
    if callback is None or inspect.iscoroutinefunction(callback):
        return callback
    return sync_to_async(callback, thread_sensitive=False)


#: Seconds ``SyncSubscription.next(timeout)`` gives its own wait to end by itself.
NEXT_GRACE = 5.0


class SyncEnsign:
    """The :class:`Ensign` API as blocking calls; takes the same arguments."""

    def __init__(self, *args: Any, call_timeout: float | None = None, **kwargs: Any) -> None:
        self.client = Ensign(*args, **kwargs)
        self._call_timeout = call_timeout
        self._thread: _LoopThread | None = None
        self._lock = threading.Lock()
        self._closed = False

    def _run(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run ``make()`` on the client's loop, for at most ``call_timeout`` seconds."""
        return self._run_within(make, self._call_timeout)

    def _run_within(self, make: Callable[[], Coroutine[Any, Any, T]], limit: float | None) -> T:
        """Run ``make()`` on the client's loop; ``limit`` None waits as long as it takes."""
        with self._lock:
            if self._closed:
                raise exceptions.ClientClosed()
            if self._thread is None:
                self._thread = _LoopThread()
            thread = self._thread
        return thread.run(make(), limit)

    # -- publishing ------------------------------------------------------------

    def publish(
        self,
        topic: str,
        *events: Event | Sequence[Event],
        on_ack: Callback | None = None,
        on_nack: Callback | None = None,
        ensure_exists: bool = False,
        send_by: SendDeadline | None = None,
    ) -> None:
        """Queue events and return (see :meth:`Ensign.publish`)."""
        self._run(
            lambda: self.client.publish(
                topic,
                *events,
                on_ack=_async_callback(on_ack),
                on_nack=_async_callback(on_nack),
                ensure_exists=ensure_exists,
                send_by=send_by,
            )
        )

    def wait_for_ack(self, event: Event, timeout: float | None = None) -> Outcome:
        """Block until the event's Ack or Nack; PublishTimeout after ``timeout``."""
        return self._run(lambda: event.wait_for_ack(timeout))

    def flush(self, timeout: float | None = 2.0) -> None:
        """Block until every published event has an outcome; FlushTimeout after ``timeout``."""
        self._run(lambda: self.client.flush(timeout))

    # -- subscribing and querying ------------------------------------------------

    def subscribe(self, *topics: str | Sequence[str], **options: Any) -> SyncSubscription:
        """A blocking iterator of received events (see :meth:`Ensign.subscribe`)."""

        async def make() -> Subscription:
            return self.client.subscribe(*topics, **options)

        return SyncSubscription(self, self._run(make))

    def query(
        self,
        query: str,
        params: Mapping[str, ParamValue] | None = None,
        include_duplicates: bool = False,
    ) -> list[ReceivedEvent]:
        """Every stored event matching an EnSQL query."""

        async def fetch() -> list[ReceivedEvent]:
            cursor = await self.client.query(query, params, include_duplicates)
            return await cursor.fetchall()

        return self._run(fetch)

    # -- topics and server -------------------------------------------------------

    def create_topic(self, topic_name: str) -> str:
        """See :meth:`Ensign.create_topic`."""
        return self._run(lambda: self.client.create_topic(topic_name))

    def ensure_topic_exists(self, topic_name: str) -> str:
        """See :meth:`Ensign.ensure_topic_exists`."""
        return self._run(lambda: self.client.ensure_topic_exists(topic_name))

    def topic_exists(self, name: str) -> bool:
        """See :meth:`Ensign.topic_exists`."""
        return self._run(lambda: self.client.topic_exists(name))

    def topic_id(self, name: str) -> str:
        """See :meth:`Ensign.topic_id`."""
        return self._run(lambda: self.client.topic_id(name))

    def get_topics(self) -> list[Topic]:
        """See :meth:`Ensign.get_topics`."""
        return self._run(self.client.get_topics)

    def retrieve_topic(self, topic: str) -> Topic:
        """See :meth:`Ensign.retrieve_topic`."""
        return self._run(lambda: self.client.retrieve_topic(topic))

    list_topics = get_topics

    def set_topic_deduplication_policy(self, id: str, *args: Any, **kwargs: Any) -> TopicState:
        """See :meth:`Ensign.set_topic_deduplication_policy`."""
        return self._run(lambda: self.client.set_topic_deduplication_policy(id, *args, **kwargs))

    def set_topic_sharding_strategy(self, id: str, strategy: str | int = 1) -> TopicState:
        """See :meth:`Ensign.set_topic_sharding_strategy`."""
        return self._run(lambda: self.client.set_topic_sharding_strategy(id, strategy))

    def archive_topic(self, topic: str) -> TopicState:
        """See :meth:`Ensign.archive_topic`."""
        return self._run(lambda: self.client.archive_topic(topic))

    def destroy_topic(self, topic: str) -> TopicState:
        """See :meth:`Ensign.destroy_topic`."""
        return self._run(lambda: self.client.destroy_topic(topic))

    def status(self) -> ServerStatus:
        """See :meth:`Ensign.status`."""
        return self._run(self.client.status)

    def info(self, topic_ids: Sequence[str] | None = None) -> ProjectInfo:
        """See :meth:`Ensign.info`."""
        return self._run(lambda: self.client.info(topic_ids))

    # -- lifecycle ----------------------------------------------------------------

    def close(self) -> None:
        """Wait for every outcome, close the client and stop its thread."""
        with self._lock:
            thread, self._thread = self._thread, None
            self._closed = True
        if thread is None:
            return
        try:
            thread.run(self.client.close(), None)
        finally:
            thread.stop()

    def __enter__(self) -> SyncEnsign:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SyncReceivedEvent:
    """A received event whose ``ack()`` and ``nack()`` block; other attributes as
    :class:`ReceivedEvent` (``data``, ``meta``, ``topic``, ``committed_at`` ...)."""

    def __init__(self, owner: SyncEnsign, event: ReceivedEvent) -> None:
        self._owner = owner
        self.event = event

    def __getattr__(self, name: str) -> Any:
        return getattr(self.event, name)

    def ack(self) -> bool:
        """Ack the event."""
        return self._owner._run(self.event.ack)

    def nack(self, code: int = NackCode.UNPROCESSED, error: str = "") -> bool:
        """Nack the event."""
        return self._owner._run(lambda: self.event.nack(code, error))

    def __repr__(self) -> str:
        return f"Sync{self.event!r}"


class SyncSubscription:
    """Blocking iteration over a :class:`Subscription`."""

    def __init__(self, owner: SyncEnsign, subscription: Subscription) -> None:
        self._owner = owner
        self.subscription = subscription

    def __iter__(self) -> Iterator[SyncReceivedEvent]:
        return self

    def __next__(self) -> SyncReceivedEvent:
        event = self.next()
        if event is None:
            raise StopIteration
        return event

    def next(self, timeout: float | None = None) -> SyncReceivedEvent | None:
        """The next event; None at the end or if none arrived within ``timeout`` seconds."""

        async def step() -> ReceivedEvent | None:
            try:
                return await asyncio.wait_for(self.subscription.__anext__(), timeout)
            except (StopAsyncIteration, TimeoutError):
                return None

        # Bounded by its own timeout, not the client's call_timeout: waiting for the next
        # event is what this call is for.
        limit = None if timeout is None else timeout + NEXT_GRACE
        event = self._owner._run_within(step, limit)
        return None if event is None else SyncReceivedEvent(self._owner, event)

    def close(self) -> None:
        """End the subscription (nothing to do once the client is closed: it ended them)."""
        if self._owner._closed:
            return
        self._owner._run(self.subscription.close)

    def __enter__(self) -> SyncSubscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

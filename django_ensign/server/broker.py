"""Wakes subscribers when events are committed and keeps the newest ones in memory."""

from __future__ import annotations

import asyncio
import itertools
from collections import deque

from django_ensign.server.storage import Recent
from django_ensign.server.topics import TopicRegistry

_RING = 8192


class Broker:
    """Per-topic rings of recently committed events plus a wake-up signal for waiters."""

    def __init__(self, registry: TopicRegistry) -> None:
        self.registry = registry
        self._rings: dict[bytes, deque[Recent]] = {}
        self._waiters: set[asyncio.Event] = set()

    def on_commit(self, by_topic: dict[bytes, list[Recent]]) -> None:
        """Storage listener: record the new events and wake every waiter."""
        for topic_id, events in by_topic.items():
            ring = self._rings.get(topic_id)
            if ring is None:
                ring = self._rings[topic_id] = deque(maxlen=_RING)
            ring.extend(events)
            topic = self.registry.by_id.get(topic_id)
            last = events[-1][0]
            if topic is not None and last > topic.offset:
                topic.offset = last
        for waiter in self._waiters:
            waiter.set()

    def forget(self, topic_id: bytes) -> None:
        """Drop the ring of a destroyed topic."""
        self._rings.pop(topic_id, None)

    def recent(self, topic_id: bytes, after: int, limit: int) -> list[Recent] | None:
        """Events with offset > ``after`` from memory, or None if the ring does not reach back."""
        ring = self._rings.get(topic_id)
        if not ring:
            return None
        first = ring[0][0]
        if after + 1 < first:
            return None
        start = after + 1 - first
        return list(itertools.islice(ring, start, start + limit))

    def waiter(self) -> asyncio.Event:
        """A new event, set on every commit; call ``release`` when done with it."""
        waiter = asyncio.Event()
        self._waiters.add(waiter)
        return waiter

    def release(self, waiter: asyncio.Event) -> None:
        """Stop waking ``waiter``."""
        self._waiters.discard(waiter)

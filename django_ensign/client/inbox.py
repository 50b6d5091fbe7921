"""A bounded FIFO between a subscription's reading task and its consumers.

``asyncio.Queue`` costs a coroutine, a future and a wake-up check per item on both
sides; a subscription moves one item per delivered event, so this buffer keeps only
what it needs: taking a buffered item never suspends, and a future is made only when a
side really has to wait.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class Inbox(Generic[T]):
    """Items in arrival order; ``put`` waits while ``maxsize`` items are buffered."""

    __slots__ = ("_getters", "_items", "_maxsize", "_putters")

    def __init__(self, maxsize: int) -> None:
        self._items: deque[T] = deque()
        self._maxsize = maxsize
        self._getters: deque[asyncio.Future[None]] = deque()
        self._putters: deque[asyncio.Future[None]] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        """Whether nothing is buffered."""
        return not self._items

    def push(self, item: T) -> None:
        """Buffer ``item`` now, past the bound (end markers must never wait)."""
        self._items.append(item)
        _wake(self._getters)

    def offer(self, item: T) -> bool:
        """Buffer ``item`` if there is room; whether it was taken."""
        if len(self._items) >= self._maxsize:
            return False
        self.push(item)
        return True

    async def put(self, item: T) -> None:
        """Buffer ``item``, waiting for room first."""
        while len(self._items) >= self._maxsize:
            await _wait(self._putters)
        self.push(item)

    async def get(self) -> T:
        """The oldest item, waiting for one if none is buffered."""
        items = self._items
        while not items:
            await _wait(self._getters)
        item = items.popleft()
        if self._putters:
            _wake(self._putters)
        if items and self._getters:
            _wake(self._getters)  # a waiter passed over by a racing get
        return item

    def clear(self) -> None:
        """Drop every buffered item and free a waiting ``put``."""
        self._items.clear()
        _wake(self._putters)


async def _wait(waiters: deque[asyncio.Future[None]]) -> None:
    future = asyncio.get_running_loop().create_future()
    waiters.append(future)
    try:
        await future
    except BaseException:
        if future.done() and not future.cancelled():
            _wake(waiters)  # woken, then cancelled: the wake goes to the next waiter
        else:
            future.cancel()
            if future in waiters:
                waiters.remove(future)
        raise


def _wake(waiters: deque[asyncio.Future[None]]) -> None:
    while waiters:
        future = waiters.popleft()
        if not future.done():
            future.set_result(None)
            return

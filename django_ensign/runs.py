"""Runs of one object in a sequence, found by identity."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar, cast

T = TypeVar("T")

_NOTHING = object()


def identity_runs(items: Iterable[T]) -> Iterator[tuple[T, int]]:
    """``(item, count)`` for each run of the very same object in ``items``.

    A claim's rows share one lease token object and a server commit's acks one time
    object: comparing identity finds their runs without hashing each item (a
    ``uuid.UUID`` hashes in Python). An equal but distinct object starts a new run.
    """
    last: object = _NOTHING
    count = 0
    for item in items:
        if item is last:
            count += 1
            continue
        if last is not _NOTHING:
            yield cast(T, last), count
        last, count = item, 1
    if last is not _NOTHING:
        yield cast(T, last), count

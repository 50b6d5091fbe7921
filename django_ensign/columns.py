"""Making strings fit the text columns they are stored in."""

from __future__ import annotations

import functools
import hashlib

from django.db.models import Model


@functools.cache
def limit(model: type[Model], name: str) -> int:
    """The ``max_length`` of ``model``'s field ``name``."""
    return int(getattr(model._meta.get_field(name), "max_length", None) or 0)


def hashed(value: str, size: int) -> str:
    """``value``, or when longer than ``size`` its head, ``#`` and its SHA-256 in ``size``.

    For keys (ordering keys, stable ids): equal values still give one result and
    different ones practically never the same, so what was keyed by the value stays
    keyed alike.
    """
    if len(value) <= size:
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[: size - 1]
    return f"{value[: size - 1 - len(digest)]}#{digest}"


def storable(value: str) -> str:
    """``value`` with each NUL character replaced (U+FFFD): PostgreSQL's text and jsonb
    refuse NUL, and an event from another publisher may carry one."""
    return value.replace("\x00", "\ufffd")


def storable_key(value: str) -> str:
    """A key made :func:`storable`, kept apart by a digest of the original from another
    key that had U+FFFD where this one had NUL."""
    if "\x00" not in value:
        return value
    return f"{storable(value)}#{hashlib.sha256(value.encode()).hexdigest()[:16]}"


def cut(value: str, size: int) -> str:
    """``value`` cut to ``size`` characters: for labels, where a shorter one will do."""
    return value[:size]

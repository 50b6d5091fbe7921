"""The subscriber's handler registry: ``@django_ensign.handler("topic")``.

Handlers live in each installed app's ``ensign_handlers`` module, which
:func:`autodiscover` imports from ``AppConfig.ready()``. A handler is a plain or
``async`` function taking one :class:`InboundEvent`.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from asgiref.sync import iscoroutinefunction
from django.core.exceptions import ImproperlyConfigured

from django_ensign import exceptions

HandlerFunc = Callable[["InboundEvent"], Awaitable[None] | None]
"""What a handler is: a plain or ``async`` function of one event."""
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class InboundEvent:
    """One event as a handler sees it; plain data, so it survives Celery and replay."""

    topic: str
    event_id: str
    """The outbox's stable id when the publisher set one, else the server's event id."""
    data: bytes
    mimetype: str = "application/octet-stream"
    metadata: dict[str, str] = field(default_factory=dict)
    type_name: str = ""
    type_version: str = ""
    committed_at: dt.datetime | None = None
    server_id: str = ""
    """The server's own id (RLID text) of this copy of the event."""
    offset: int | None = None
    decode_error: str = ""
    """Why the server's bytes did not decode as an Ensign event (``data`` then holds them)."""

    def json(self) -> Any:
        """The data decoded as JSON; raises ``ValueError`` if it is not JSON."""
        return json.loads(self.data)

    def text(self, encoding: str = "utf-8") -> str:
        """The data decoded as text."""
        return self.data.decode(encoding)

    def to_payload(self) -> dict[str, Any]:
        """A JSON-safe dict of this event (for Celery), undone by :meth:`from_payload`."""
        return {
            "topic": self.topic,
            "event_id": self.event_id,
            "data": base64.b64encode(self.data).decode("ascii"),
            "mimetype": self.mimetype,
            "metadata": dict(self.metadata),
            "type_name": self.type_name,
            "type_version": self.type_version,
            "committed_at": self.committed_at.isoformat() if self.committed_at else None,
            "server_id": self.server_id,
            "offset": self.offset,
            "decode_error": self.decode_error,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> InboundEvent:
        """The event :meth:`to_payload` described."""
        committed = payload.get("committed_at")
        return cls(
            topic=str(payload["topic"]),
            event_id=str(payload["event_id"]),
            data=base64.b64decode(payload["data"]),
            mimetype=str(payload.get("mimetype") or "application/octet-stream"),
            metadata={str(k): str(v) for k, v in (payload.get("metadata") or {}).items()},
            type_name=str(payload.get("type_name") or ""),
            type_version=str(payload.get("type_version") or ""),
            committed_at=dt.datetime.fromisoformat(committed) if committed else None,
            server_id=str(payload.get("server_id") or ""),
            offset=payload.get("offset"),
            decode_error=str(payload.get("decode_error") or ""),
        )


@dataclass(frozen=True)
class Handler:
    """A registered handler and what it is registered for."""

    func: Callable[[InboundEvent], Any]
    topic: str
    type_name: str | None = None
    mimetype: str | None = None
    name: str = ""

    @functools.cached_property
    def is_async(self) -> bool:
        """Whether the handler is a coroutine function, or an object with ``async def __call__``.

        A plain function that returns an awaitable (a sync decorator around an ``async``
        handler) is not detected here; :mod:`~django_ensign.dispatch` awaits its result.
        """
        return iscoroutinefunction(self.func) or iscoroutinefunction(type(self.func).__call__)

    def same_subscription(self, other: Handler) -> bool:
        """Whether ``other`` wants the same events (topic, type name and mimetype)."""
        return (self.topic, self.type_name, self.mimetype) == (
            other.topic,
            other.type_name,
            other.mimetype,
        )

    def matches(self, event: InboundEvent) -> bool:
        """Whether this handler wants ``event`` (topic, then type name and mimetype if set)."""
        if self.topic != event.topic:
            return False
        if self.type_name is not None and self.type_name != event.type_name:
            return False
        return self.mimetype is None or _same_mimetype(self.mimetype, event.mimetype)


def _same_mimetype(wanted: str, actual: str) -> bool:
    return wanted.split(";")[0].strip().lower() == actual.split(";")[0].strip().lower()


def _describe(entry: Handler) -> str:
    """The events ``entry`` wants, for error messages."""
    narrowed = [
        f"{label}={value!r}"
        for label, value in (("type_name", entry.type_name), ("mimetype", entry.mimetype))
        if value is not None
    ]
    return f"topic {entry.topic!r}" + (f" ({', '.join(narrowed)})" if narrowed else "")


#: The longest handler name the inbox and dead-letter tables hold (their ``handler`` column).
NAME_MAX = 255


class Registry:
    """Handlers by name, in registration order."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def register(self, entry: Handler) -> None:
        """Add ``entry``; the same name again for the same events replaces it (module reloads).

        Raises ``ImproperlyConfigured`` when the name is taken by a handler of other
        events: the name keys the inbox, so two handlers cannot share it.
        """
        if len(entry.name) > NAME_MAX:
            raise ImproperlyConfigured(
                f"the handler name {entry.name[:60]!r}… is {len(entry.name)} characters long; "
                f"the inbox keeps at most {NAME_MAX}. Pass a shorter stable name=."
            )
        known = self._handlers.get(entry.name)
        if known is not None and not known.same_subscription(entry):
            raise ImproperlyConfigured(
                f"a handler named {entry.name!r} is already registered for "
                f"{_describe(known)}; registering it again for {_describe(entry)} would "
                "replace it. Give each registration its own stable name= (it keys the inbox)."
            )
        self._handlers[entry.name] = entry

    def unregister(self, name: str) -> None:
        """Remove the handler called ``name`` if registered."""
        self._handlers.pop(name, None)

    def all(self) -> list[Handler]:
        """Every registered handler."""
        return list(self._handlers.values())

    def get(self, name: str) -> Handler | None:
        """The handler registered as ``name``, if any."""
        return self._handlers.get(name)

    def require(self, name: str) -> Handler:
        """The handler registered as ``name``; raises :class:`HandlerNotRegistered` if none."""
        entry = self._handlers.get(name)
        if entry is None:
            raise exceptions.HandlerNotRegistered(f"no handler is registered as {name!r}")
        return entry

    def for_topic(self, topic: str) -> list[Handler]:
        """Handlers registered for ``topic``, whatever their type filters."""
        return [h for h in self._handlers.values() if h.topic == topic]

    def for_event(self, event: InboundEvent) -> list[Handler]:
        """Handlers that want ``event``."""
        return [h for h in self._handlers.values() if h.matches(event)]

    def topics(self) -> list[str]:
        """Every topic some handler is registered for, sorted."""
        return sorted({h.topic for h in self._handlers.values()})


registry = Registry()
"""The process-wide registry that :func:`handler` fills."""


def handler_name(func: Callable[..., Any]) -> str:
    """The default, stable name of a handler: ``module.qualname``."""
    return f"{func.__module__}.{func.__qualname__}"


def handler(
    topic: str,
    *,
    type_name: str | None = None,
    mimetype: str | None = None,
    name: str | None = None,
) -> Callable[[F], F]:
    """Register the decorated function as a handler of ``topic``'s events.

    ``type_name`` and ``mimetype`` narrow it to events of that type. ``name`` is
    the key of the inbox (default ``module.qualname``): renaming a handler makes
    it see earlier events as new, so pin the name if you move the function.
    """
    if not topic:
        raise ValueError("a handler needs a topic")

    def decorate(func: F) -> F:
        registry.register(
            Handler(
                func=func,
                topic=topic,
                type_name=type_name,
                mimetype=mimetype,
                name=name or handler_name(func),
            )
        )
        return func

    return decorate


def autodiscover() -> None:
    """Import every installed app's ``ensign_handlers`` module so its handlers register."""
    from django.utils.module_loading import autodiscover_modules

    autodiscover_modules("ensign_handlers")

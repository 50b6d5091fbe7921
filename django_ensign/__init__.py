"""django-ensign: publish and consume Ensign events from Django without losing one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django_ensign.handlers import handler

__version__ = "0.1.0"

__all__ = ["__version__", "handler"]


def __getattr__(name: str) -> Any:
    # Lazy so that importing the package (e.g. the SDK or server) never imports Django.
    if name == "handler":
        from django_ensign.handlers import handler

        return handler
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

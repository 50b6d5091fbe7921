"""Every error django-ensign raises derives from :class:`EnsignError`.

This module is Django-free so the SDK and server can share it; Django-side
errors live in :mod:`django_ensign.exceptions` and derive from the same root.
Each class's docstring is its default message.
"""

from __future__ import annotations


class EnsignError(Exception):
    """An Ensign operation failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

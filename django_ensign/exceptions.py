"""All django-ensign errors, under the one root :class:`EnsignError`."""

from __future__ import annotations

from django_ensign.client.exceptions import *  # noqa: F403  (the SDK's errors are ours too)
from django_ensign.client.exceptions import EnsignError

# === outbox errors ==========================================================
# === end outbox errors ======================================================

# === subscriber errors ======================================================
# === end subscriber errors ==================================================

__all__ = ["EnsignError"]

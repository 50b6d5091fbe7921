"""The server's timestamps as Django stores datetimes.

Ensign's commit times arrive as aware UTC datetimes. With ``USE_TZ = False`` Django keeps
naive datetimes in the default time zone, and its SQLite, MySQL and Oracle backends
refuse aware ones, so such a project gets them in that form.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.utils import timezone


def stored(value: dt.datetime | None) -> dt.datetime | None:
    """``value`` as the project's datetime columns take it."""
    if value is None or settings.USE_TZ or timezone.is_naive(value):
        return value
    return timezone.make_naive(value, timezone.get_default_timezone())

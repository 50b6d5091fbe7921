"""Admin for readings (editable: each save publishes) and what came back (read-only)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.http import HttpRequest

from example_project.weather.models import Reading, ReceivedReading, StationSummary

# ModelAdmin is generic only in django-stubs; at run time it cannot be subscripted.
if TYPE_CHECKING:
    _ReadingAdminBase = admin.ModelAdmin[Reading]
    _AnyAdminBase = admin.ModelAdmin[Any]
else:
    _ReadingAdminBase = _AnyAdminBase = admin.ModelAdmin


@admin.register(Reading)
class ReadingAdmin(_ReadingAdminBase):
    """Readings; adding, changing or deleting one publishes an event to ``weather``."""

    list_display = ("id", "station", "temperature", "units", "recorded_at")
    list_filter = ("station", "units")
    search_fields = ("station",)


class _ReadOnly(_AnyAdminBase):
    """Rows only the handler writes."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ReceivedReading)
class ReceivedReadingAdmin(_ReadOnly):
    """One row per ``weather`` event handled."""

    list_display = (
        "event_id",
        "type_name",
        "reading_id",
        "station",
        "temperature",
        "units",
        "committed_at",
        "received_at",
    )
    list_filter = ("type_name", "station")
    search_fields = ("=event_id", "station")


@admin.register(StationSummary)
class StationSummaryAdmin(_ReadOnly):
    """Each station's readings as the events describe them."""

    list_display = (
        "station",
        "readings",
        "min_celsius",
        "mean_celsius",
        "max_celsius",
        "latest_celsius",
        "latest_recorded_at",
        "events",
    )

"""App configuration of the weather app."""

from __future__ import annotations

from django.apps import AppConfig


class WeatherConfig(AppConfig):
    """The weather app; its handlers live in ``ensign_handlers`` (found by django_ensign)."""

    name = "example_project.weather"
    label = "weather"
    verbose_name = "Weather"
    default_auto_field = "django.db.models.BigAutoField"

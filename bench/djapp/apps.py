"""App config: registers ``Reading`` as a published model."""

from __future__ import annotations

from django.apps import AppConfig

from bench.djapp.topics import READINGS_TOPIC


class BenchConfig(AppConfig):
    """The benchmarks' app."""

    name = "bench.djapp"
    label = "benchapp"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from bench.djapp import models
        from django_ensign import registry

        registry.register(models.Reading, topic=READINGS_TOPIC)

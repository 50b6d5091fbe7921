"""Django app configuration for django-ensign."""

from __future__ import annotations

from django.apps import AppConfig


class EnsignConfig(AppConfig):
    """Registers checks, connects outbox signals and discovers ``ensign_handlers`` modules."""

    name = "django_ensign"
    verbose_name = "Ensign"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django_ensign import (
            checks,  # noqa: F401  (registers the system checks)
            handlers,
            registry,
        )

        registry.connect_signals()
        handlers.autodiscover()

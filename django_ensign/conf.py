"""django-ensign's settings: one typed object, each default defined once.

Read lazily from ``django.conf.settings`` and remembered until Django's
``setting_changed`` signal names an ``ENSIGN_`` setting, so ``override_settings`` works
in tests. (Assigning to ``django.conf.settings`` at run time, which Django advises
against, sends no signal and goes unnoticed.) Every setting is a top-level Django setting
prefixed ``ENSIGN_``; the connection settings fall back to the SDK's environment variables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from django.conf import settings as django_settings
from django.core.signals import setting_changed

_MISSING = object()
_UNSET = object()


def _flag(value: Any) -> bool:
    """A yes/no setting: a string as an environment variable means it ("false" is False)."""
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)


class Settings:
    """Typed access to the ``ENSIGN_*`` settings; see the README for each one."""

    def __init__(self) -> None:
        # Every published save reads a few settings; an unset one costs Django a raised
        # and caught AttributeError on each read, so what Django answered is kept.
        self._seen: dict[str, Any] = {}

    def _get(self, name: str, default: Any) -> Any:
        value = self._seen.get(name, _MISSING)
        if value is _MISSING:
            value = self._seen[name] = getattr(django_settings, f"ENSIGN_{name}", _UNSET)
        return default if value is _UNSET else value

    def forget(self) -> None:
        """Read every setting from Django again (done whenever an ``ENSIGN_`` setting changes)."""
        self._seen.clear()

    # --- connection -------------------------------------------------------
    @property
    def ENDPOINT(self) -> str:
        return str(self._get("ENDPOINT", os.environ.get("ENSIGN_ENDPOINT", "127.0.0.1:5356")))

    @property
    def AUTH_URL(self) -> str:
        return str(
            self._get("AUTH_URL", os.environ.get("ENSIGN_AUTH_URL", "http://127.0.0.1:8088"))
        )

    @property
    def INSECURE(self) -> bool | None:
        """None: TLS unless the endpoint is loopback (the SDK decides)."""
        value = self._get("INSECURE", os.environ.get("ENSIGN_INSECURE"))
        return None if value is None else _flag(value)

    @property
    def CLIENT_ID(self) -> str | None:
        value = self._get("CLIENT_ID", os.environ.get("ENSIGN_CLIENT_ID"))
        return str(value) if value else None

    @property
    def CLIENT_SECRET(self) -> str | None:
        value = self._get("CLIENT_SECRET", os.environ.get("ENSIGN_CLIENT_SECRET"))
        return str(value) if value else None

    @property
    def CREDENTIALS_FILE(self) -> str | None:
        """A credentials JSON file (``ClientID``/``ClientSecret``) used when no id/secret is set."""
        value = self._get("CREDENTIALS_FILE", None)
        return str(value) if value else None

    # --- embedded server (manage.py ensign_server) ------------------------
    # None is the default too: settings files read these from the environment
    # (os.environ.get), which gives None where only the development server runs them.
    def _server(self, name: str, default: Any) -> Any:
        value = self._get(name, None)
        return default if value is None else value

    @property
    def SERVER_DATA_DIR(self) -> str:
        return str(self._server("SERVER_DATA_DIR", "ensign-data"))

    @property
    def SERVER_HOST(self) -> str:
        return str(self._server("SERVER_HOST", "127.0.0.1"))

    @property
    def SERVER_PORT(self) -> int:
        return int(self._server("SERVER_PORT", 5356))

    @property
    def SERVER_AUTH_PORT(self) -> int:
        return int(self._server("SERVER_AUTH_PORT", 8088))

    # --- outbox and relay (owned by the outbox; add below) -----------------
    @property
    def PUBLISHED_MODELS(self) -> dict[str, dict[str, Any]]:
        """``{"app_label.Model": {"topic": ..., ...}}``: models that publish, as settings.

        None means none; anything else but a mapping reads as none too (check E007 reports
        it), so start-up goes on.
        """
        value = self._get("PUBLISHED_MODELS", None)
        return dict(value) if isinstance(value, Mapping) else {}

    def published_models_is_mapping(self) -> bool:
        """Whether ``ENSIGN_PUBLISHED_MODELS`` is a mapping or None (for check E007)."""
        value = self._get("PUBLISHED_MODELS", None)
        return value is None or isinstance(value, Mapping)

    @property
    def OUTBOX_CREATE_TOPICS(self) -> bool:
        """Create topics that do not exist yet on first publish."""
        return _flag(self._get("OUTBOX_CREATE_TOPICS", True))

    @property
    def OUTBOX_BATCH_SIZE(self) -> int:
        """Rows one claim takes at most."""
        return int(self._get("OUTBOX_BATCH_SIZE", 500))

    @property
    def OUTBOX_MAX_IN_FLIGHT(self) -> int:
        """Events published and not yet acked or nacked, per relay."""
        return int(self._get("OUTBOX_MAX_IN_FLIGHT", 4000))

    @property
    def OUTBOX_LEASE_SECONDS(self) -> float:
        """How long a claim holds its rows; the relay renews it while it works."""
        return float(self._get("OUTBOX_LEASE_SECONDS", 30.0))

    @property
    def OUTBOX_POLL_SECONDS(self) -> float:
        """The polling floor: the relay looks for rows at least this often."""
        return float(self._get("OUTBOX_POLL_SECONDS", 1.0))

    @property
    def OUTBOX_MAX_ATTEMPTS(self) -> int:
        """Publish attempts before a row is dead."""
        return int(self._get("OUTBOX_MAX_ATTEMPTS", 20))

    @property
    def OUTBOX_BACKOFF_BASE(self) -> float:
        """Seconds of the first retry's backoff ceiling (doubles per attempt, full jitter)."""
        return float(self._get("OUTBOX_BACKOFF_BASE", 0.5))

    @property
    def OUTBOX_BACKOFF_MAX(self) -> float:
        """Ceiling of one retry's backoff, in seconds."""
        return float(self._get("OUTBOX_BACKOFF_MAX", 300.0))

    @property
    def OUTBOX_NOTIFY(self) -> bool:
        """PostgreSQL: NOTIFY the relay when a transaction that wrote rows commits."""
        return _flag(self._get("OUTBOX_NOTIFY", True))

    @property
    def OUTBOX_NOTIFY_CHANNEL(self) -> str:
        return str(self._get("OUTBOX_NOTIFY_CHANNEL", "django_ensign_outbox"))

    @property
    def OUTBOX_CELERY_ON_COMMIT(self) -> bool:
        """Queue ``tasks.publish_outbox`` when a transaction that wrote rows commits."""
        return _flag(self._get("OUTBOX_CELERY_ON_COMMIT", False))

    @property
    def OUTBOX_LOCK_FILE_DIR(self) -> str | None:
        """Where the drain lock's file lives on databases without advisory locks."""
        value = self._get("OUTBOX_LOCK_FILE_DIR", None)
        return str(value) if value else None

    # --- end outbox --------------------------------------------------------

    # --- subscriber (owned by the subscriber; add below) -------------------
    @property
    def SUBSCRIBER_GROUP(self) -> str:
        """The consumer group ``ensign_subscribe`` joins by default: the project's package name."""
        value = self._get("SUBSCRIBER_GROUP", None)
        if value:
            return str(value)
        module = getattr(django_settings, "SETTINGS_MODULE", None) or "django"
        return str(module).split(".")[0]

    @property
    def SUBSCRIBER_CONCURRENCY(self) -> int:
        """Events handled at the same time by one subscriber process."""
        return int(self._get("SUBSCRIBER_CONCURRENCY", 4))

    @property
    def SUBSCRIBER_BATCH_SIZE(self) -> int | None:
        """Events per delivery asked of a server with the batch extension.

        None: the SDK's default; 0: plain Ensign framing, one event per message.
        """
        value = self._get("SUBSCRIBER_BATCH_SIZE", None)
        return None if value is None else int(value)

    @property
    def SUBSCRIBER_WINDOW(self) -> int | None:
        """Most events delivered and not yet acked per stream (None: 64 per concurrent slot).

        Bounded so that events waiting in this process are handled within the server's
        delivery timeout; 0 leaves it to the server.
        """
        value = self._get("SUBSCRIBER_WINDOW", None)
        return None if value is None else int(value)

    @property
    def SUBSCRIBER_MAX_ATTEMPTS(self) -> int:
        """Attempts of a failing handler before its event is dead-lettered."""
        return int(self._get("SUBSCRIBER_MAX_ATTEMPTS", 5))

    @property
    def SUBSCRIBER_BACKOFF_BASE(self) -> float:
        """Ceiling in seconds of the first retry's backoff (doubles per attempt, full jitter)."""
        return float(self._get("SUBSCRIBER_BACKOFF_BASE", 0.2))

    @property
    def SUBSCRIBER_BACKOFF_MAX(self) -> float:
        """Ceiling of one retry's backoff, in seconds; keep the sum under the delivery timeout."""
        return float(self._get("SUBSCRIBER_BACKOFF_MAX", 5.0))

    @property
    def SUBSCRIBER_RECONNECT_MAX(self) -> float:
        """Longest wait in seconds between two reconnection attempts."""
        return float(self._get("SUBSCRIBER_RECONNECT_MAX", 5.0))

    @property
    def SUBSCRIBER_CELERY_QUEUE(self) -> str | None:
        """The Celery queue of ``--celery`` mode's task (None: the task's default queue)."""
        value = self._get("SUBSCRIBER_CELERY_QUEUE", None)
        return str(value) if value else None

    # --- end subscriber ----------------------------------------------------


settings = Settings()


def _setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith("ENSIGN_"):
        settings.forget()


setting_changed.connect(_setting_changed, dispatch_uid="django_ensign.conf")

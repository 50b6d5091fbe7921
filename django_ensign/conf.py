"""django-ensign's settings: one typed object, each default defined once.

Read lazily from ``django.conf.settings`` on every access so ``override_settings``
works in tests. Every setting is a top-level Django setting prefixed ``ENSIGN_``;
the connection settings fall back to the SDK's environment variables.
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings as django_settings

_MISSING = object()


class Settings:
    """Typed access to the ``ENSIGN_*`` settings; see the README for each one."""

    def _get(self, name: str, default: Any) -> Any:
        return getattr(django_settings, f"ENSIGN_{name}", default)

    # --- connection -------------------------------------------------------
    @property
    def ENDPOINT(self) -> str:
        return str(self._get("ENDPOINT", os.environ.get("ENSIGN_ENDPOINT", "127.0.0.1:5356")))

    @property
    def AUTH_URL(self) -> str:
        return str(self._get("AUTH_URL", os.environ.get("ENSIGN_AUTH_URL", "http://127.0.0.1:8088")))

    @property
    def INSECURE(self) -> bool | None:
        """None: TLS unless the endpoint is loopback (the SDK decides)."""
        value = self._get("INSECURE", os.environ.get("ENSIGN_INSECURE"))
        if isinstance(value, str):
            return value.strip().lower() in {"1", "true", "yes", "on"}
        return None if value is None else bool(value)

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
    @property
    def SERVER_DATA_DIR(self) -> str:
        return str(self._get("SERVER_DATA_DIR", "ensign-data"))

    @property
    def SERVER_HOST(self) -> str:
        return str(self._get("SERVER_HOST", "127.0.0.1"))

    @property
    def SERVER_PORT(self) -> int:
        return int(self._get("SERVER_PORT", 5356))

    @property
    def SERVER_AUTH_PORT(self) -> int:
        return int(self._get("SERVER_AUTH_PORT", 8088))

    # --- outbox and relay (owned by the outbox; add below) -----------------
    # --- end outbox --------------------------------------------------------

    # --- subscriber (owned by the subscriber; add below) -------------------
    # --- end subscriber ----------------------------------------------------


settings = Settings()

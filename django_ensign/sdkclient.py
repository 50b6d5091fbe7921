"""The SDK client the Django side uses, configured from the ``ENSIGN_*`` settings."""

from __future__ import annotations

from typing import Any

from django_ensign.conf import settings


def client_from_settings(**options: Any) -> Any:
    """An SDK client configured from the ``ENSIGN_*`` settings; ``options`` tune the rest."""
    # Lazy, as in the relay and subscriber before: importing them does not load grpc.
    from django_ensign.client import Ensign

    return Ensign(
        client_id=settings.CLIENT_ID or "",
        client_secret=settings.CLIENT_SECRET or "",
        endpoint=settings.ENDPOINT,
        insecure=settings.INSECURE,
        auth_url=settings.AUTH_URL,
        cred_path=settings.CREDENTIALS_FILE or "",
        **options,
    )

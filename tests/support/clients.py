"""SDK clients of a test's embedded server, configured by arguments (not the environment)."""

from __future__ import annotations

from typing import Any

from django_ensign.client import Ensign
from tests.support.server import EmbeddedServer


def sdk_client(server: EmbeddedServer, *, auth_url: str | None = None, **options: Any) -> Ensign:
    """A plaintext client of ``server`` (optionally authenticating at another issuer)."""
    creds = server.credentials
    return Ensign(
        client_id=creds.client_id,
        client_secret=creds.client_secret,
        endpoint=server.endpoint,
        insecure=True,
        auth_url=auth_url or server.auth_url,
        **options,
    )

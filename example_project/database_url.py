"""Turn a ``DATABASE_URL`` into a Django ``DATABASES`` entry.

Only the two backends the demo supports: ``postgres://`` (or ``postgresql://``)
and ``sqlite:///path``. Kept here rather than as a dependency because it is
twenty lines.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

_POSTGRES_SCHEMES = {"postgres", "postgresql", "pgsql"}


def parse(url: str) -> dict[str, Any]:
    """The ``DATABASES["default"]`` dict that ``url`` describes; ``ValueError`` if unsupported."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        # sqlite:///relative.db and sqlite:////absolute.db, as dj-database-url spells them.
        path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": path or ":memory:"}
    if scheme not in _POSTGRES_SCHEMES:
        raise ValueError(
            f"DATABASE_URL scheme {parts.scheme!r} is not supported: use postgres:// or sqlite://"
        )
    name = unquote(parts.path.lstrip("/"))
    if not name:
        raise ValueError("DATABASE_URL names no database: add /<name> after the host")
    config: dict[str, Any] = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
    }
    options = dict(parse_qsl(parts.query))
    if options:
        config["OPTIONS"] = options
    return config

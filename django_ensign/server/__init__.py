"""The embedded Ensign-compatible server (``python -m django_ensign.server``); no Django here."""

from __future__ import annotations

from django_ensign.server.app import create_key, run, serve

__all__ = ["create_key", "run", "serve"]

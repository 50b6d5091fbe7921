"""Admin views: read-mostly lists of outbox, inbox and dead-letter rows."""

from __future__ import annotations

from django.contrib import admin  # noqa: F401

# === outbox admin ===========================================================
# === end outbox admin =======================================================

# === inbox admin ============================================================
# === end inbox admin ========================================================

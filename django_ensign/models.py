"""django-ensign's tables: the outbox (events to publish) and the inbox (events handled)."""

from __future__ import annotations

from django.db import models  # noqa: F401

# === outbox models (owned by the outbox work) ===============================
# === end outbox models ======================================================

# === inbox models (owned by the subscriber work) ============================
# === end inbox models =======================================================

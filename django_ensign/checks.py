"""System checks with stable ids (``django_ensign.E001`` …); a test covers each id."""

from __future__ import annotations

# Ids E001–E019 and W001–W019: connection and outbox; E020–E039 and W020–W039: subscriber.

# === outbox and connection checks ===========================================
# === end outbox and connection checks =======================================

# === subscriber checks ======================================================
# === end subscriber checks ==================================================

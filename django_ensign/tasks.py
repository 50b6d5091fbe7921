"""Celery tasks: draining the outbox, and running handlers in ``--celery`` subscriber mode.

Importing this module requires Celery (the ``celery`` extra).
"""

from __future__ import annotations

# === outbox tasks ===========================================================
# === end outbox tasks =======================================================

# === subscriber tasks =======================================================
# === end subscriber tasks ===================================================

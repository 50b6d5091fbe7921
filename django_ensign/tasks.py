"""Celery tasks: draining the outbox, and running handlers in ``--celery`` subscriber mode.

Importing this module requires Celery (the ``celery`` extra).
"""

from __future__ import annotations

# === outbox tasks ===========================================================
import dataclasses as _dataclasses
from typing import Any as _Any

from celery import shared_task as _shared_task

#: A beat schedule entry to copy into ``CELERY_BEAT_SCHEDULE``: drain every 5 seconds.
OUTBOX_BEAT_SCHEDULE: dict[str, dict[str, _Any]] = {
    "django-ensign-publish-outbox": {
        "task": "django_ensign.tasks.publish_outbox",
        "schedule": 5.0,
        "options": {"expires": 5.0},
    }
}


@_shared_task(name="django_ensign.tasks.publish_outbox", ignore_result=False)  # type: ignore[misc]
def publish_outbox(
    batch_size: int | None = None, topics: list[str] | None = None, using: str = "default"
) -> dict[str, int]:
    """Publish every due outbox row, then return; skips if a relay or another drain is running.

    Returns the relay's counts, or ``{"skipped": 1}`` when the drain lock was taken.
    """
    from django_ensign import locks, relay

    with locks.drain_lock(using) as taken:
        if not taken:
            return {"skipped": 1}
        options = relay.RelayOptions(once=True, using=using, topics=tuple(topics or ()))
        if batch_size:
            options.batch_size = batch_size
        stats = relay.run(options, handle_signals=False)
    return _dataclasses.asdict(stats)


# === end outbox tasks =======================================================

# === subscriber tasks =======================================================
# === end subscriber tasks ===================================================

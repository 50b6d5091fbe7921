"""Event metadata keys that django-ensign's outbox sets and its subscriber reads."""

from __future__ import annotations

#: The outbox row's stable id (a ULID string); unchanged when a relay re-publishes
#: after a crash, so consumers can deduplicate on it.
STABLE_ID_KEY = "django_ensign.id"
#: The ordering key the outbox kept per-key order for (default: the model's pk).
ORDERING_KEY = "django_ensign.key"

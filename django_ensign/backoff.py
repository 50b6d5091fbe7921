"""Retry policy: which nacks the relay retries, and how long the relay and the subscriber
wait between tries."""

from __future__ import annotations

import random

# ensign.v1beta1.Nack.Code values that publishing again cannot fix.
MAX_EVENT_SIZE_EXCEEDED = 1
TOPIC_ARCHIVED = 3
TOPIC_DELETED = 4
PERMISSION_DENIED = 5
FINAL_CODES = frozenset({MAX_EVENT_SIZE_EXCEEDED, TOPIC_ARCHIVED, TOPIC_DELETED, PERMISSION_DENIED})


def is_retryable(code: int | None) -> bool:
    """Whether a nack with ``code`` (None: no reply, e.g. a broken connection) may succeed later."""
    return code not in FINAL_CODES


def delay(attempts: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before attempt ``attempts + 1``: full jitter over ``min(cap, base·2ⁿ⁻¹)``.

    Full jitter spreads the retries of many rows that failed together (a server outage)
    so they do not all come back in the same instant.
    """
    # Past 2.0 ** 1023 a float overflows; any cap is reached long before that.
    ceiling = min(cap, base * 2.0 ** min(max(attempts - 1, 0), 1023))
    return (rng or random).uniform(0.0, ceiling)

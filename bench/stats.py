"""Small statistics helpers: percentiles and rates."""

from __future__ import annotations

from collections.abc import Sequence


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of ``values`` (``fraction`` in 0..1); 0.0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


def rate(count: int, seconds: float) -> float:
    """Events per second, 0.0 when no time elapsed."""
    return count / seconds if seconds > 0 else 0.0


def ms(seconds: float) -> float:
    """Seconds to milliseconds."""
    return seconds * 1000.0

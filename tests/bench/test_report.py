"""``bench.report``: ratios read against a goal never round up past it."""

from __future__ import annotations

import pytest

from bench import report


@pytest.mark.parametrize(
    ("value", "ceiling", "shown"),
    [
        (2_991, 3_750, "0.79x"),  # 0.7976: rounding to nearest would show the goal as met
        (3_000, 3_750, "0.80x"),
        (29, 100, "0.29x"),  # stored as 0.28999…
        (41_540, 48_124, "0.86x"),
        (1, 0, "n/a"),
    ],
)
def test_a_ratio_is_rounded_down(value: float, ceiling: float, shown: str) -> None:
    assert report.ratio(value, ceiling) == shown


def test_a_figure_that_could_not_be_measured_shows_as_a_dash() -> None:
    assert report.figure(None) == "-"
    assert report.figure(1234.56) == "1,235"
    assert report.figure(52.46, 1) == "52.5"

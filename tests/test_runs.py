"""Runs of the same object, as the relay counts leases and formats acks by them."""

from __future__ import annotations

import uuid

from django_ensign.runs import identity_runs


def test_runs_are_of_the_very_same_object_in_order() -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    twin = uuid.UUID(str(first))  # equal to first, but another object
    runs = list(identity_runs([first, first, second, None, None, twin, first]))
    assert [(item, count) for item, count in runs] == [
        (first, 2),
        (second, 1),
        (None, 2),
        (first, 1),
        (first, 1),
    ]
    assert runs[3][0] is twin
    assert list(identity_runs([])) == []

"""`django_ensign.columns`: strings made to fit their columns keep what keys them apart."""

from __future__ import annotations

import pytest

from django_ensign import columns
from django_ensign.models import InboxEvent, OutboxEvent


@pytest.mark.parametrize("size", [64, 255])
def test_a_long_value_is_fitted_alike_each_time_and_apart_from_others(size: int) -> None:
    long = "k" * 400
    fitted = columns.hashed(long, size)
    assert len(fitted) == size
    assert columns.hashed(long, size) == fitted
    assert columns.hashed(long + "!", size) != fitted
    assert columns.hashed("short", size) == "short"


def test_a_key_keeps_a_readable_head_where_the_column_has_room() -> None:
    fitted = columns.hashed("customer:" + "x" * 300, 255)
    assert fitted.startswith("customer:xxx")


def test_limits_are_the_columns_max_length() -> None:
    assert columns.limit(OutboxEvent, "ordering_key") == 255
    assert columns.limit(InboxEvent, "event_id") == 64


def test_a_key_with_nul_is_stored_without_it_and_apart_from_one_with_u_fffd() -> None:
    stored = columns.storable_key("id\x00one")
    assert "\x00" not in stored
    assert stored != columns.storable_key("id\ufffdone") == "id\ufffdone"
    assert columns.storable_key("id\x00one") == stored  # every delivery keys alike

"""Helpers for the outbox tests."""

from __future__ import annotations

import pytest
from django.db import connection


@pytest.fixture
def postgres_only() -> None:
    """Skip on SQLite: the test exercises PostgreSQL behaviour (row locks, LISTEN/NOTIFY)."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (ENSIGN_TEST_DB=sqlite runs SQLite)")

"""Fixtures of the fault suite: the seeded randomness, the ledger, and its summary line.

The seed comes from ``ENSIGN_FAULT_SEED`` (to replay a failing run) or is drawn fresh;
each test gets its own ``random.Random`` derived from the seed and its node id, so one
test replays the same way alone or in the whole run.
"""

from __future__ import annotations

import os
import random
import secrets

import pytest
from django.db import connection

from tests.faults.support import LEDGER, Ledger

LEDGER.seed = int(os.environ.get("ENSIGN_FAULT_SEED") or secrets.randbelow(2**31))


@pytest.fixture
def ledger() -> Ledger:
    """The suite's ledger; each test using it counts as one scenario."""
    LEDGER.tests += 1
    return LEDGER


@pytest.fixture
def fault_rng(request: pytest.FixtureRequest) -> random.Random:
    """Randomness for when and what to break, reproducible from the printed seed."""
    print(f"fault seed {LEDGER.seed} (replay: ENSIGN_FAULT_SEED={LEDGER.seed})")
    return random.Random(f"{LEDGER.seed}:{request.node.nodeid}")


@pytest.fixture
def postgres_only() -> None:
    """Skip unless the test database is PostgreSQL: the relay subprocesses share it."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (the relay and subscriber processes share the database)")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if LEDGER.tests:
        terminalreporter.write_sep("=", "fault suite summary")
        terminalreporter.write_line(LEDGER.summary())

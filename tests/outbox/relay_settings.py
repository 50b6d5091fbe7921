"""Settings for relay subprocesses in the outbox tests: tests.settings plus knobs from env vars."""

from __future__ import annotations

import os

from tests.settings import *  # noqa: F403

ENSIGN_OUTBOX_LEASE_SECONDS = float(os.environ.get("TEST_RELAY_LEASE", "30"))
ENSIGN_OUTBOX_CREATE_TOPICS = os.environ.get("TEST_RELAY_CREATE_TOPICS", "1") == "1"
ENSIGN_OUTBOX_POLL_SECONDS = float(os.environ.get("TEST_RELAY_POLL", "0.5"))
ENSIGN_OUTBOX_BACKOFF_BASE = 0.05
ENSIGN_OUTBOX_BACKOFF_MAX = 0.5
ENSIGN_OUTBOX_MAX_ATTEMPTS = 1000

if os.environ.get("TEST_RELAY_DB_PORT"):  # a relay whose database path a test can cut
    DATABASES["default"] = {**DATABASES["default"], "PORT": os.environ["TEST_RELAY_DB_PORT"]}  # noqa: F405

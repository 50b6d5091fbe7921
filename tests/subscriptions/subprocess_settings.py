"""Settings of subscriber and Celery worker subprocesses: the test suite's, on the test database."""

from __future__ import annotations

import os

from tests.settings import *  # noqa: F403
from tests.settings import DATABASES

_database = os.environ.get("ENSIGN_SUBPROCESS_DB")
if _database:
    DATABASES["default"]["NAME"] = _database

CELERY_BROKER_URL = os.environ.get("ENSIGN_SUBPROCESS_BROKER", "memory://")
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("ENSIGN_SUBPROCESS_QUEUE", "celery")
CELERY_BROKER_TRANSPORT_OPTIONS = {"confirm_publish": True}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

if os.environ.get("ENSIGN_SUBPROCESS_BROKER"):
    # The subscriber process sends tasks through this app, as a project's __init__ would.
    import tests.subscriptions.celery_app  # noqa: F401

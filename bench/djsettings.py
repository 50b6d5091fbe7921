"""Django settings of the benchmarks' scratch project (``--settings bench.djsettings``).

``BENCH_DB=postgres`` (default) uses the scratch database ``BENCH_PG_DB`` (``ensign_bench``)
on the machine's PostgreSQL; ``BENCH_DB=sqlite`` uses the file ``BENCH_SQLITE_PATH`` in WAL
mode. ``BENCH_PG_ENGINE`` picks another PostgreSQL engine, and ``BENCH_PG_PREPARED=1`` sets
its ``ENSIGN_PREPARED_INSERT``. The Ensign connection comes from the ``ENSIGN_*``
environment variables.
"""

from __future__ import annotations

import os
from typing import Any

DATABASES: dict[str, dict[str, Any]]

if os.environ.get("BENCH_DB", "postgres") == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": os.environ.get("BENCH_PG_ENGINE", "django.db.backends.postgresql"),
            "NAME": os.environ.get("BENCH_PG_DB", "ensign_bench"),
            "USER": "postgres",
            "HOST": "127.0.0.1",
            "PORT": "5432",
            "ENSIGN_PREPARED_INSERT": os.environ.get("BENCH_PG_PREPARED") == "1",
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("BENCH_SQLITE_PATH", "bench.sqlite3"),
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
            },
        }
    }

SECRET_KEY = "benchmarks-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django_ensign",
    "bench.djapp",
]
ENSIGN_SUBSCRIBER_GROUP = "bench"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": "WARNING"},
}

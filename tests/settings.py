"""Django settings for the test suite.

The database is PostgreSQL (the machine's server) unless ENSIGN_TEST_DB=sqlite,
or PostgreSQL is unreachable, in which case SQLite is used and the tests that
need PostgreSQL skip themselves.
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent


def _postgres_up() -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", 5432)) == 0


TEST_DB = os.environ.get("ENSIGN_TEST_DB") or ("postgres" if _postgres_up() else "sqlite")

DATABASES: dict[str, dict[str, Any]]
if TEST_DB == "postgres":
    import psycopg

    DATABASES = {
        "default": {
            # ENSIGN_TEST_PG_ENGINE=django_ensign.db.backends.postgresql runs a leg with ours.
            "ENGINE": os.environ.get("ENSIGN_TEST_PG_ENGINE", "django.db.backends.postgresql"),
            "NAME": os.environ.get("ENSIGN_TEST_PG_NAME", "ensign"),
            "USER": "postgres",
            "HOST": "127.0.0.1",
            "PORT": "5432",
            "TEST": {"NAME": os.environ.get("ENSIGN_TEST_PG_TEST_NAME", "test_django_ensign")},
        }
    }
    # The same test database through django_ensign's engine (outbox rows ride the COMMIT).
    DATABASES["held"] = {
        **DATABASES["default"],
        "ENGINE": "django_ensign.db.backends.postgresql",
        "TEST": {"MIRROR": "default"},
    }
    # Two ways a driver binds parameters server-side: the rows cannot share the COMMIT's call.
    DATABASES["held_server_binding"] = {
        **DATABASES["held"],
        "OPTIONS": {"server_side_binding": True},
    }
    DATABASES["held_cursor_factory"] = {
        **DATABASES["held"],
        "OPTIONS": {"cursor_factory": psycopg.Cursor},
    }
    # The outbox row's INSERT prepared once per session; and asked for where Django's
    # marker of a transaction-mode pooler says sessions do not last.
    DATABASES["held_prepared"] = {**DATABASES["held"], "ENSIGN_PREPARED_INSERT": True}
    DATABASES["held_pooled"] = {
        **DATABASES["held_prepared"],
        "DISABLE_SERVER_SIDE_CURSORS": True,
    }
    # Asked for through an engine that cannot prepare it (check W003).
    DATABASES["plain_prepared"] = {
        **DATABASES["held_prepared"],
        "ENGINE": "django.db.backends.postgresql",
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(BASE_DIR / "test.sqlite3"),
            "TEST": {"NAME": os.environ.get("ENSIGN_TEST_SQLITE", "")},
        }
    }

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ROOT_URLCONF = "tests.urls"
# Tests give ensign_server its own directories; a stray start must not write into the checkout.
ENSIGN_SERVER_DATA_DIR = os.path.join(tempfile.gettempdir(), "django-ensign-tests", "ensign-data")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django_ensign",
    "tests.testapp",
    "tests.handlerapp",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

STATIC_URL = "/static/"

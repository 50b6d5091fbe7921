"""Settings of the demo project.

Nothing needs configuring to run it locally: the database is SQLite next to this
file and Ensign is the embedded server that ``make demo`` starts, whose
credentials it reads from the server's ``credentials.json``. Environment
variables switch either to something real:

- ``DATABASE_URL`` (``postgres://postgres@127.0.0.1:5432/ensign_demo``): PostgreSQL.
- ``ENSIGN_ENDPOINT``, ``ENSIGN_AUTH_URL``, ``ENSIGN_INSECURE``, ``ENSIGN_CLIENT_ID``,
  ``ENSIGN_CLIENT_SECRET``: another Ensign server (e.g. Rotational's hosted one).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from example_project import database_url

BASE_DIR = Path(__file__).resolve().parent

# Local demo only: a fixed key and DEBUG on. Set DJANGO_SECRET_KEY/DJANGO_DEBUG elsewhere.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-project-local-demo-only")
DEBUG = os.environ.get("DJANGO_DEBUG", "1").lower() in {"1", "true", "yes", "on"}
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]", "testserver"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_ensign",
    "example_project.weather",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example_project.urls"
WSGI_APPLICATION = "example_project.wsgi.application"
ASGI_APPLICATION = "example_project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

_database_url = os.environ.get("DATABASE_URL", "")
_default_db: dict[str, Any] = (
    database_url.parse(_database_url)
    if _database_url
    else {"ENGINE": "django.db.backends.sqlite3", "NAME": str(BASE_DIR / "db.sqlite3")}
)
if _default_db["ENGINE"].endswith("sqlite3"):
    # The relay, the subscriber and runserver write at the same time: wait for the lock.
    _default_db.setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
DATABASES = {"default": _default_db}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"

# --- Ensign ---------------------------------------------------------------------------
# Defaults point at the embedded server (`manage.py ensign_server`); the environment
# variables the official SDK reads override them.
ENSIGN_SERVER_DATA_DIR = os.environ.get("ENSIGN_SERVER_DATA_DIR", str(BASE_DIR / "ensign-data"))
ENSIGN_ENDPOINT = os.environ.get("ENSIGN_ENDPOINT", "127.0.0.1:5356")
ENSIGN_AUTH_URL = os.environ.get("ENSIGN_AUTH_URL", "http://127.0.0.1:8088")
# Unset: plaintext to a loopback endpoint, TLS to anything else.
ENSIGN_INSECURE = os.environ.get("ENSIGN_INSECURE") or None
ENSIGN_CLIENT_ID = os.environ.get("ENSIGN_CLIENT_ID") or None
ENSIGN_CLIENT_SECRET = os.environ.get("ENSIGN_CLIENT_SECRET") or None
# Used only when no client id and secret are set: the file the embedded server writes.
ENSIGN_CREDENTIALS_FILE = os.environ.get(
    "ENSIGN_CREDENTIALS_FILE", str(Path(ENSIGN_SERVER_DATA_DIR) / "credentials.json")
)

# --- Celery (optional: `celery -A example_project worker -B`) -------------------------
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
CELERY_TASK_ALWAYS_EAGER = False
CELERY_BEAT_SCHEDULE = {
    # Drains the outbox every 5 seconds; a running `ensign_publish_outbox` makes it skip.
    "django-ensign-publish-outbox": {
        "task": "django_ensign.tasks.publish_outbox",
        "schedule": 5.0,
        "options": {"expires": 5.0},
    }
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"short": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "short"}},
    "loggers": {"django_ensign": {"handlers": ["console"], "level": "INFO"}},
}

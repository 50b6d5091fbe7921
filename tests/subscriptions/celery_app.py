"""The Celery app of the ``--celery`` tests' worker and subscriber subprocesses."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.subscriptions.subprocess_settings")

app = Celery("ensign_tests")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.set_current()
app.set_default()

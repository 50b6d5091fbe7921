"""The demo's Celery app: ``celery -A example_project worker -B`` drains the outbox on a beat.

Celery finds this module by name (``<package>.celery``); settings prefixed
``CELERY_`` configure it, including the beat entry for
``django_ensign.tasks.publish_outbox``.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")

app = Celery("example_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Imports each installed app's `tasks` module, django_ensign.tasks among them.
app.autodiscover_tasks()

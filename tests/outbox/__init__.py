"""Outbox tests: writing rows, the relay, Celery, admin, checks."""

"""Side effects of the test handlers, so tests can count what was applied."""

from __future__ import annotations

from django.db import models


class Applied(models.Model):
    """One application of one event by one handler; deliberately not unique."""

    handler = models.CharField(max_length=100)
    # Wider than the inbox's key: events with over-long stable ids reach handlers.
    event_id = models.CharField(max_length=200)
    topic = models.CharField(max_length=200)
    value = models.TextField(blank=True, default="")

    def __str__(self) -> str:
        return f"{self.handler} {self.event_id}"


class Switch(models.Model):
    """A named flag tests flip to make a handler fail (read from any process)."""

    name = models.CharField(max_length=100, unique=True)
    on = models.BooleanField(default=True)

    def __str__(self) -> str:
        return f"{self.name}={self.on}"

    @classmethod
    def is_on(cls, name: str) -> bool:
        return cls.objects.filter(name=name, on=True).exists()

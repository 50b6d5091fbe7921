"""A reading that publishes through the outbox, one that does not, and a handler's row."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class Reading(models.Model):
    """Published on save (registered in ``BenchConfig.ready``)."""

    sensor = models.CharField(max_length=64)
    temp = models.FloatField()
    taken = models.DateTimeField(default=timezone.now)

    objects: models.Manager[Reading] = models.Manager()

    def __str__(self) -> str:
        return f"{self.sensor}: {self.temp}"


class PlainReading(models.Model):
    """The same fields, not published: the baseline of the save-cost benchmark."""

    sensor = models.CharField(max_length=64)
    temp = models.FloatField()
    taken = models.DateTimeField(default=timezone.now)

    objects: models.Manager[PlainReading] = models.Manager()

    def __str__(self) -> str:
        return f"{self.sensor}: {self.temp}"


class HandledEvent(models.Model):
    """One row per event the writing handler saw."""

    event_id = models.CharField(max_length=64)
    topic = models.CharField(max_length=512)

    objects: models.Manager[HandledEvent] = models.Manager()

    def __str__(self) -> str:
        return self.event_id

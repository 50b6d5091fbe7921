"""Readings published to the ``weather`` topic, and what the handler built from them."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.utils import timezone

from django_ensign.registry import publishes

TOPIC = "weather"


class Units(models.TextChoices):
    """Temperature units a station may report in."""

    CELSIUS = "celsius", "°C"
    FAHRENHEIT = "fahrenheit", "°F"


def to_celsius(temperature: float, units: str) -> float:
    """``temperature`` in degrees Celsius."""
    if units == Units.FAHRENHEIT:
        return (temperature - 32.0) * 5.0 / 9.0
    return temperature


def reading_payload(reading: Reading) -> dict[str, Any]:
    """The event data of a reading: what a consumer needs, and nothing it must not see."""
    return {
        "id": reading.pk,
        "station": reading.station,
        "temperature": reading.temperature,
        "units": reading.units,
        "recorded_at": reading.recorded_at,
    }


@publishes(TOPIC, serializer=reading_payload)
class Reading(models.Model):
    """A temperature a station measured. Saving or deleting one publishes an event."""

    station = models.CharField(max_length=64)
    temperature = models.FloatField()
    units = models.CharField(max_length=16, choices=Units.choices, default=Units.CELSIUS)
    recorded_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("-recorded_at", "-id")

    def __str__(self) -> str:
        return f"{self.station}: {self.temperature:g} {self.get_units_display()}"


class ReceivedReading(models.Model):
    """One ``weather`` event as the handler received it; one row per event, never two."""

    event_id = models.CharField(
        max_length=64, unique=True, help_text="The event's stable id (the outbox row's ULID)."
    )
    type_name = models.CharField(max_length=64, help_text="ReadingCreated, …Updated or …Deleted.")
    reading_id = models.BigIntegerField(help_text="The primary key of the Reading upstream.")
    station = models.CharField(max_length=64)
    temperature = models.FloatField()
    units = models.CharField(max_length=16, choices=Units.choices)
    recorded_at = models.DateTimeField()
    committed_at = models.DateTimeField(
        null=True, blank=True, help_text="When the Ensign server committed the event."
    )
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("-id",)
        indexes = [models.Index(fields=["station", "reading_id"], name="weather_received_station")]

    def __str__(self) -> str:
        return f"{self.type_name} {self.station} {self.temperature:g} ({self.event_id})"

    @property
    def deleted(self) -> bool:
        """Whether this event says the reading was deleted."""
        return self.type_name.endswith("Deleted")


class StationSummary(models.Model):
    """A station's current readings, as the events received so far describe them."""

    station = models.CharField(max_length=64, unique=True)
    readings = models.PositiveIntegerField(default=0, help_text="Readings not deleted.")
    min_celsius = models.FloatField(null=True, blank=True)
    max_celsius = models.FloatField(null=True, blank=True)
    mean_celsius = models.FloatField(null=True, blank=True)
    latest_celsius = models.FloatField(null=True, blank=True)
    latest_recorded_at = models.DateTimeField(null=True, blank=True)
    events = models.PositiveIntegerField(default=0, help_text="Events received for the station.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("station",)
        verbose_name_plural = "station summaries"

    def __str__(self) -> str:
        return f"{self.station}: {self.readings} readings"

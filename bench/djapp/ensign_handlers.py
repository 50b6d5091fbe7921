"""Handlers of the dispatch benchmark: one does nothing, one writes a row."""

from __future__ import annotations

import django_ensign
from bench.djapp.models import HandledEvent
from bench.djapp.topics import NOOP_TOPIC, WRITE_TOPIC
from django_ensign.handlers import InboundEvent


@django_ensign.handler(NOOP_TOPIC)
def noop(event: InboundEvent) -> None:
    """Do nothing (the inbox row is still written)."""


@django_ensign.handler(WRITE_TOPIC)
def write_row(event: InboundEvent) -> None:
    """Write one row in the handler's transaction."""
    HandledEvent.objects.create(event_id=event.event_id, topic=event.topic)

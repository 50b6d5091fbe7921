"""Test helpers for projects that use django-ensign.

``capture_outbox()`` collects the outbox rows your code writes inside a block::

    with capture_outbox() as captured:
        Order.objects.create(total=10)
    assert captured.types() == ["OrderCreated"]
    assert captured.json()[0]["total"] == 10
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

from django_ensign.models import OutboxEvent, outbox_alias


class CapturedOutbox:
    """The outbox rows written since the capture started (read live from the database)."""

    def __init__(self, using: str, after_id: int) -> None:
        self.using = using
        self.after_id = after_id
        #: The last row written inside the block, once it has ended.
        self.until_id: int | None = None

    @property
    def events(self) -> list[OutboxEvent]:
        """The captured rows, oldest first."""
        rows = OutboxEvent.objects.using(self.using).filter(id__gt=self.after_id)
        if self.until_id is not None:
            rows = rows.filter(id__lte=self.until_id)
        return list(rows.order_by("id"))

    def of_topic(self, topic: str) -> list[OutboxEvent]:
        """The captured rows of one topic."""
        return [event for event in self.events if event.topic == topic]

    def types(self) -> list[str]:
        """The captured rows' event type names, oldest first."""
        return [event.type_name for event in self.events]

    def json(self) -> list[Any]:
        """The captured payloads decoded as JSON."""
        return [json.loads(bytes(event.data)) for event in self.events]

    def __len__(self) -> int:
        return len(self.events)


@contextlib.contextmanager
def capture_outbox(using: str | None = None) -> Iterator[CapturedOutbox]:
    """Collect the outbox rows written inside the ``with`` block (committed or not yet)."""
    alias = using or outbox_alias()
    captured = CapturedOutbox(alias, _last_id(alias))
    yield captured
    # Only on a normal exit: after an error the transaction may refuse queries, and the
    # block's own exception must reach the test unchanged.
    captured.until_id = _last_id(alias)  # rows written after the block are not its


def _last_id(alias: str) -> int:
    last = OutboxEvent.objects.using(alias).order_by("-id").values_list("id", flat=True).first()
    return last or 0

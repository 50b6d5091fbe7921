"""`django_ensign.testing.capture_outbox` shows users what their code wrote to the outbox."""

from __future__ import annotations

import pytest
from django.db import IntegrityError

from django_ensign import outbox
from django_ensign.testing import capture_outbox
from tests.testapp.models import Order

pytestmark = pytest.mark.django_db


def test_capture_sees_only_rows_written_inside_the_block() -> None:
    outbox.publish("before", {"n": 0})
    with capture_outbox() as captured:
        Order.objects.create(reference="C-1", total=3)
        outbox.publish("audit", {"who": "me"}, type_name="Audited")
    outbox.publish("after", {"n": 1})
    assert len(captured) == 2
    assert captured.types() == ["OrderCreated", "Audited"]
    assert [e.topic for e in captured.of_topic("audit")] == ["audit"]
    assert captured.json()[0]["reference"] == "C-1"


def test_an_error_inside_the_block_reaches_the_test_unchanged() -> None:
    taken = Order.objects.create(reference="C-2")
    with pytest.raises(IntegrityError), capture_outbox():
        Order.objects.create(pk=taken.pk, reference="C-2 again")

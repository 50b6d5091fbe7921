"""A published model's save outside ``atomic()`` commits the change and its event together."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connection, models, transaction
from django.test.utils import CaptureQueriesContext

from django_ensign import registry
from django_ensign.models import OutboxEvent
from tests.testapp.models import Note, Order, RushOrder

pytestmark = pytest.mark.django_db(transaction=True)


class SerializerFailed(Exception):
    pass


def failing_serializer(note: models.Model) -> object:
    raise SerializerFailed


@pytest.fixture
def failing_notes() -> Iterator[None]:
    registry.register(Note, topic="notes", serializer=failing_serializer)
    try:
        yield
    finally:
        registry.unregister(Note)


def test_a_save_whose_event_cannot_be_written_is_not_committed(failing_notes: None) -> None:
    # Autocommit: without a transaction of the save's own, Django commits the row before
    # post_save runs, and the change would stay without its event.
    assert connection.get_autocommit()
    with pytest.raises(SerializerFailed):
        Note.objects.create(text="lost?")
    assert not Note.objects.exists()
    assert not OutboxEvent.objects.exists()
    assert connection.get_autocommit()  # the connection is back as it was


def test_a_proxys_save_is_atomic_through_its_concrete_model() -> None:
    order = RushOrder.objects.create(reference="R-9")
    assert connection.get_autocommit()
    if connection.vendor != "postgresql":
        pytest.skip("xmin is PostgreSQL's")
    with connection.cursor() as cursor:
        cursor.execute("SELECT xmin::text FROM testapp_order WHERE id = %s", [order.pk])
        [(order_xid,)] = cursor.fetchall()
        cursor.execute(
            "SELECT xmin::text FROM django_ensign_outboxevent WHERE ordering_key = %s",
            [f"testapp.rushorder:{order.pk}"],
        )
        [(event_xid,)] = cursor.fetchall()
    assert order_xid == event_xid  # one transaction wrote both


def test_inside_atomic_the_save_adds_no_savepoint() -> None:
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        Order.objects.create(reference="A-2")
    assert not [q for q in queries.captured_queries if "SAVEPOINT" in q["sql"].upper()]
    assert OutboxEvent.objects.count() == 1


def test_unregistering_gives_the_model_its_own_save_back(failing_notes: None) -> None:
    registry.unregister(Note)
    try:
        assert "save_base" not in Note.__dict__
        Note.objects.create(text="plain")  # publishes nothing, so the serializer is not asked
        assert Note.objects.count() == 1
    finally:
        registry.register(Note, topic="notes", serializer=failing_serializer)

"""A published model's save outside ``atomic()`` commits the change and its event together."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import DatabaseError, IntegrityError, connection, models, transaction
from django.db.models.signals import post_save
from django.template import Context, Engine
from django.test.utils import CaptureQueriesContext

from django_ensign import exceptions, registry
from django_ensign.models import OutboxEvent
from tests.testapp.models import GiftOrder, Note, Order, RushOrder

pytestmark = pytest.mark.django_db(transaction=True)


class SerializerFailed(Exception):
    pass


def serializer_failing_on_boom(note: models.Model) -> object:
    if note.text == "boom":  # type: ignore[attr-defined]
        raise SerializerFailed
    return {"text": note.text}  # type: ignore[attr-defined]


@pytest.fixture
def notes() -> Iterator[None]:
    registry.register(Note, topic="notes", serializer=serializer_failing_on_boom)
    try:
        yield
    finally:
        registry.unregister(Note)


@pytest.fixture
def on_order_saved() -> Iterator[list[Any]]:
    """Receivers appended to the list run after the outbox's, on each Order save."""
    receivers: list[Any] = []

    def receiver(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
        for run in receivers:
            run(instance)

    post_save.connect(receiver, sender=Order, dispatch_uid="test_atomic_saves")
    post_save.connect(receiver, sender=GiftOrder, dispatch_uid="test_atomic_saves")
    try:
        yield receivers
    finally:
        post_save.disconnect(sender=Order, dispatch_uid="test_atomic_saves")
        post_save.disconnect(sender=GiftOrder, dispatch_uid="test_atomic_saves")


def test_a_save_whose_event_cannot_be_written_is_not_committed(notes: None) -> None:
    # Autocommit: without a transaction of the save's own, Django commits the row before
    # post_save runs, and the change would stay without its event.
    assert connection.get_autocommit()
    with pytest.raises(SerializerFailed):
        Note.objects.create(text="boom")
    assert not Note.objects.exists()
    assert not OutboxEvent.objects.exists()
    assert connection.get_autocommit()  # the connection is back as it was


def test_an_update_whose_event_cannot_be_written_keeps_the_old_row(notes: None) -> None:
    note = Note.objects.create(text="first")
    note.text = "boom"
    with pytest.raises(SerializerFailed):
        note.save()
    assert Note.objects.get().text == "first"
    assert list(OutboxEvent.objects.values_list("type_name", flat=True)) == ["NoteCreated"]


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
            [f"testapp.order:{order.pk}"],
        )
        [(event_xid,)] = cursor.fetchall()
    assert order_xid == event_xid  # one transaction wrote both


def test_a_receiver_that_swallows_a_database_error_fails_the_save_loudly(
    on_order_saved: list[Any],
) -> None:
    taken = Order.objects.create(reference="taken")

    def duplicate_quietly(instance: models.Model) -> None:
        if instance.pk != taken.pk:
            with contextlib.suppress(IntegrityError):
                Order.objects.create(pk=taken.pk, reference="dup")

    on_order_saved.append(duplicate_quietly)
    with pytest.raises(exceptions.SaveRolledBack, match=r"testapp\.Order"):
        Order.objects.create(reference="lost")
    assert list(Order.objects.values_list("reference", flat=True)) == ["taken"]
    assert OutboxEvent.objects.count() == 1


def test_a_receiver_that_swallows_a_failed_query_fails_the_save_loudly(
    on_order_saved: list[Any],
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SQLite goes on after a failed statement: nothing is lost there")

    def query_quietly(instance: models.Model) -> None:
        # Django marks nothing for a failed query; PostgreSQL aborts the transaction.
        with contextlib.suppress(DatabaseError), connection.cursor() as cursor:
            cursor.execute("SELECT 1/0")

    on_order_saved.append(query_quietly)
    with pytest.raises(exceptions.SaveRolledBack):
        Order.objects.create(reference="lost")
    assert not Order.objects.exists()


def test_with_autocommit_off_the_callers_transaction_is_left_to_the_caller(notes: None) -> None:
    transaction.set_autocommit(False)
    try:
        Note.objects.create(text="kept")
        with pytest.raises(SerializerFailed):
            Note.objects.create(text="boom")
        # The caller's transaction is still usable: the failed save did not doom it.
        transaction.commit()
    finally:
        transaction.set_autocommit(True)
    # Without a transaction of its own, the failed save's row stayed in the caller's.
    assert sorted(Note.objects.values_list("text", flat=True)) == ["boom", "kept"]
    assert list(OutboxEvent.objects.values_list("type_name", flat=True)) == ["NoteCreated"]


def test_inside_atomic_a_caught_event_failure_still_rolls_the_block_back(notes: None) -> None:
    # As after a failed save: the change and its event commit together or not at all.
    with transaction.atomic():
        Note.objects.create(text="kept")
        with pytest.raises(SerializerFailed):
            Note.objects.create(text="boom")
        with pytest.raises(transaction.TransactionManagementError):
            Note.objects.count()
    assert not Note.objects.exists()
    assert not OutboxEvent.objects.exists()


def test_inside_atomic_a_failing_save_in_its_own_block_lets_the_rest_commit(notes: None) -> None:
    with transaction.atomic():
        Note.objects.create(text="kept")
        with pytest.raises(SerializerFailed), transaction.atomic():
            Note.objects.create(text="boom")
    assert list(Note.objects.values_list("text", flat=True)) == ["kept"]
    assert list(OutboxEvent.objects.values_list("type_name", flat=True)) == ["NoteCreated"]


def test_inside_atomic_the_save_adds_no_savepoint() -> None:
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        Order.objects.create(reference="A-2")
    assert not [q for q in queries.captured_queries if "SAVEPOINT" in q["sql"].upper()]
    assert OutboxEvent.objects.count() == 1


def test_a_multi_table_child_that_does_not_publish_saves_as_django_does(
    on_order_saved: list[Any],
) -> None:
    def fail(instance: models.Model) -> None:
        raise SerializerFailed

    on_order_saved.append(fail)
    with pytest.raises(SerializerFailed):
        GiftOrder.objects.create(reference="G-1")
    assert GiftOrder.objects.filter(reference="G-1").exists()  # committed before post_save


def test_templates_still_cannot_call_save_base() -> None:
    order = Order.objects.create(reference="T-1")
    order.reference = "changed by a template"
    rendered = Engine().from_string("{{ o.save_base }}").render(Context({"o": order}))
    assert rendered == ""
    assert Order.objects.get().reference == "T-1"
    assert OutboxEvent.objects.count() == 1


def test_unregistering_gives_the_model_its_own_save_back(notes: None) -> None:
    registry.unregister(Note)
    try:
        assert "save_base" not in Note.__dict__
        Note.objects.create(text="boom")  # publishes nothing, so the serializer is not asked
        assert Note.objects.count() == 1
    finally:
        registry.register(Note, topic="notes", serializer=serializer_failing_on_boom)

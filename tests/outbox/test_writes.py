"""Outbox rows are written in the caller's transaction: by model signals and by the explicit API."""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, transaction
from django.db.models import F
from django.db.models.signals import post_save
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from django_ensign import claims, exceptions, outbox, registry
from django_ensign.client.events import Event
from django_ensign.models import OutboxEvent, OutboxStatus
from django_ensign.testing import capture_outbox
from django_ensign.wire import ids
from tests.testapp.models import (
    Customer,
    Document,
    Membership,
    Note,
    Order,
    Parcel,
    RushOrder,
    Team,
)

pytestmark = pytest.mark.django_db


def test_saving_a_registered_model_writes_its_event_in_the_same_transaction() -> None:
    with transaction.atomic():
        order = Order.objects.create(reference="A-1", total="12.50")
        row = OutboxEvent.objects.get()  # visible before commit: same connection, same transaction
    assert row.topic == "orders.events"
    assert row.type_name == "OrderCreated"
    assert row.type_version == "1.0.0"
    assert row.mimetype == "application/json"
    assert row.status == OutboxStatus.PENDING
    assert row.ordering_key == f"testapp.order:{order.pk}"
    assert row.metadata == {"action": "created", "model": "testapp.Order"}
    assert json.loads(bytes(row.data)) == {
        "id": order.pk, "reference": "A-1", "total": "12.50", "customer": ""
    }  # fmt: skip
    assert ids.is_ulid_str(row.event_id)


def create_then_fail(reference: str) -> None:
    with transaction.atomic():
        order = Order.objects.create(reference=reference)
        # Written, so the rollback is what takes it away.
        assert OutboxEvent.objects.filter(ordering_key__endswith=f":{order.pk}").exists()
        raise RuntimeError("business rule failed")


@pytest.mark.django_db(transaction=True)  # a real ROLLBACK, not a savepoint's
def test_rolled_back_transaction_writes_no_row() -> None:
    with pytest.raises(RuntimeError):
        create_then_fail("A-2")
    assert not Order.objects.exists()
    assert not OutboxEvent.objects.exists()


def test_rolled_back_savepoint_drops_only_its_rows() -> None:
    with transaction.atomic():
        Order.objects.create(reference="kept")
        with pytest.raises(RuntimeError):
            create_then_fail("dropped")
    assert [json.loads(bytes(r.data))["reference"] for r in OutboxEvent.objects.all()] == ["kept"]


def test_update_and_delete_publish_their_own_event_types_in_order() -> None:
    with capture_outbox() as captured:
        order = Order.objects.create(reference="A-3")
        order.total = 5
        order.save()
        order.delete()
    assert captured.types() == ["OrderCreated", "OrderUpdated", "OrderCancelled"]
    assert {row.ordering_key for row in captured.events} == {captured.events[0].ordering_key}
    assert captured.json()[2]["reference"] == "A-3"


def test_model_options_choose_events_serializer_and_key() -> None:
    with capture_outbox() as captured:
        customer = Customer.objects.create(name="ada")
        customer.name = "ada lovelace"
        customer.save()  # on_update=False
        customer.delete()  # on_delete=False
    assert captured.types() == ["CustomerJoined"]
    assert captured.json() == [{"name": "ada"}]
    assert captured.events[0].ordering_key == "ada"
    assert captured.events[0].topic == "customers"


NoteReceiver = Callable[[Note, bool], None]


@pytest.fixture
def receiver_before_the_outbox() -> Iterator[list[NoteReceiver]]:
    """Note's post_save receiver, connected before the outbox's (as one in a project's
    models.py is); it runs the callables appended to the list."""
    runs: list[NoteReceiver] = []

    def receiver(sender: type[Note], instance: Note, created: bool = False, **kw: Any) -> None:
        for run in runs:
            run(instance, created)

    post_save.connect(receiver, sender=Note, dispatch_uid="receiver_before_the_outbox")
    registry.register(Note, topic="notes")
    try:
        yield runs
    finally:
        registry.unregister(Note)
        post_save.disconnect(sender=Note, dispatch_uid="receiver_before_the_outbox")


def test_a_change_kept_past_a_failing_receiver_keeps_its_event(
    receiver_before_the_outbox: list[NoteReceiver],
) -> None:
    def search_index_down(note: Note, created: bool) -> None:
        raise ConnectionError("search index down")

    receiver_before_the_outbox.append(search_index_down)
    with transaction.atomic(), pytest.raises(ConnectionError):
        Note.objects.create(text="kept")  # the caller logs the failure and goes on
    assert Note.objects.filter(text="kept").exists()
    assert list(OutboxEvent.objects.values_list("type_name", flat=True)) == ["NoteCreated"]


def test_a_receiver_saving_again_publishes_its_update_after_the_creation(
    receiver_before_the_outbox: list[NoteReceiver],
) -> None:
    def number(note: Note, created: bool) -> None:
        if created:
            note.text = f"N-{note.pk}"
            note.save(update_fields=["text"])

    receiver_before_the_outbox.append(number)
    note = Note.objects.create(text="draft")
    rows = OutboxEvent.objects.order_by("id")
    assert [(row.type_name, json.loads(bytes(row.data))["text"]) for row in rows] == [
        ("NoteCreated", "draft"),
        ("NoteUpdated", f"N-{note.pk}"),
    ]


def test_a_key_function_returning_none_leaves_the_events_unordered() -> None:
    registry.register(Note, topic="notes", key=lambda note: None)
    try:
        Note.objects.create(text="one")
        Note.objects.create(text="two")
    finally:
        registry.unregister(Note)
    assert list(OutboxEvent.objects.values_list("ordering_key", flat=True)) == ["", ""]
    # Neither waits for the other: one claim takes both.
    assert len(claims.claim(limit=10, lease_seconds=60)) == 2


def test_a_save_with_an_expression_publishes_the_value_the_database_stored() -> None:
    order = Order.objects.create(reference="F-1", total="1.50")
    order.total = F("total") + 1
    order.save()
    updated = OutboxEvent.objects.get(type_name="OrderUpdated")
    assert json.loads(bytes(updated.data))["total"] == "2.50"


@pytest.mark.parametrize("total", [10, 7.1, "7.1", Decimal("1.239")])
def test_a_saved_value_is_published_as_the_column_holds_it(total: object) -> None:
    order = Order.objects.create(reference="T-1", total=total)
    published = json.loads(bytes(OutboxEvent.objects.get().data))["total"]
    order.refresh_from_db()
    assert published == str(order.total)  # "10.00", "7.10", "7.10", "1.24"


def test_files_and_bytes_are_published_as_the_file_name_and_base64() -> None:
    Document.objects.create(title="d", attachment="documents/a.pdf", blob=b"\x00\xff")
    Document.objects.create(title="empty")
    first, second = (json.loads(bytes(row.data)) for row in OutboxEvent.objects.order_by("id"))
    assert (first["attachment"], first["blob"]) == ("documents/a.pdf", "AP8=")
    assert (second["attachment"], second["blob"]) == (None, None)


@override_settings(TIME_ZONE="Europe/Paris")
@pytest.mark.parametrize(
    "signed",
    [
        dt.datetime(2024, 1, 1, 12, 0),  # naive: Django stores it as Paris time
        dt.datetime(2024, 1, 1, 12, 0, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")),
        "2024-01-01 12:00",
    ],
)
@pytest.mark.filterwarnings("ignore:.*received a naive datetime:RuntimeWarning")
def test_a_datetime_is_published_as_the_column_holds_it(signed: object) -> None:
    document = Document.objects.create(title="d", signed=signed)
    published = json.loads(bytes(OutboxEvent.objects.get().data))["signed"]
    document.refresh_from_db()
    assert published == "2024-01-01T11:00:00Z"
    assert dt.datetime.fromisoformat(published) == document.signed


def test_a_datetime_inside_a_json_field_is_published_as_the_column_holds_it() -> None:
    with override_settings(TIME_ZONE="Europe/Paris"):
        document = Document.objects.create(title="d", notes=dt.datetime(2024, 1, 1, 12, 0))
    published = json.loads(bytes(OutboxEvent.objects.get().data))["notes"]
    document.refresh_from_db()
    assert published == document.notes == "2024-01-01T12:00:00"


def test_a_save_of_some_fields_publishes_the_others_as_the_row_holds_them() -> None:
    order = Order.objects.create(reference="U-1", total="2.00", customer="ann")
    order.total = Decimal("99.00")  # changed in memory, but not saved
    order.customer = "bob"
    order.save(update_fields=["customer"])
    updated = json.loads(bytes(OutboxEvent.objects.get(type_name="OrderUpdated").data))
    assert (updated["total"], updated["customer"]) == ("2.00", "bob")


def test_an_update_publishes_generated_columns_as_the_database_computed_them() -> None:
    parcel = Parcel.objects.create(grams=200, count=2)
    parcel.count = 5
    parcel.save()
    created, updated = (
        json.loads(bytes(row.data))
        for row in OutboxEvent.objects.filter(topic="parcels").order_by("id")
    )
    assert (created["total_grams"], updated["total_grams"]) == (400, 1000)


def test_instances_with_deferred_fields_publish_every_field_and_can_be_deleted() -> None:
    order = Order.objects.create(reference="D-1", total="3.00", customer="ann")
    partial = Order.objects.only("id", "reference").get(pk=order.pk)
    partial.reference = "D-2"
    with CaptureQueriesContext(connection) as queries:
        partial.save(update_fields=["reference"])
    updated = OutboxEvent.objects.get(type_name="OrderUpdated")
    assert json.loads(bytes(updated.data)) == {
        "id": order.pk, "reference": "D-2", "total": "3.00", "customer": "ann"
    }  # fmt: skip
    # The deferred fields come back in one query, not one each.
    assert statements_of_queries(queries).count("SELECT") == 1
    Order.objects.only("id").get(pk=order.pk).delete()
    cancelled = OutboxEvent.objects.get(type_name="OrderCancelled")
    assert json.loads(bytes(cancelled.data)) == {"id": order.pk}  # the row is gone
    assert not Order.objects.exists()


def test_a_key_longer_than_its_column_still_saves_and_stays_one_key() -> None:
    long_key = "customer:" + "x" * 400
    rows = [outbox.publish("things", {"n": n}, key=long_key) for n in range(2)]
    other = outbox.publish("things", {"n": 2}, key=long_key + "y")
    keys = [OutboxEvent.objects.get(id=r.id).ordering_key for r in [*rows, other]]
    assert keys[0] == keys[1] != keys[2]
    assert all(len(k) <= 255 and k.startswith("customer:xxx") for k in keys)


def test_models_that_did_not_opt_in_publish_nothing() -> None:
    Note.objects.create(text="quiet")
    assert not OutboxEvent.objects.exists()


def statements_of_queries(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"].split()[0] for q in queries.captured_queries]


def statements_of(action: Callable[[], object]) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        action()
    return statements_of_queries(queries)


def test_other_models_keep_djangos_one_statement_queryset_delete() -> None:
    # A post_delete receiver for every model would make Django load rows before deleting.
    Note.objects.bulk_create([Note(text="a"), Note(text="b")])
    assert statements_of(Note.objects.all().delete) == ["DELETE"]
    registry.register(Note, topic="notes")
    try:
        Note.objects.bulk_create([Note(text="c"), Note(text="d")])
        assert statements_of(Note.objects.all().delete)[0] == "SELECT"
        assert OutboxEvent.objects.filter(type_name="NoteDeleted").count() == 2
    finally:
        registry.unregister(Note)
    Note.objects.create(text="e")
    assert statements_of(Note.objects.all().delete) == ["DELETE"]
    assert not OutboxEvent.objects.filter(type_name="NoteCreated").exists()


def test_bulk_paths_send_no_signals_so_the_explicit_api_covers_them() -> None:
    with transaction.atomic():
        orders = Order.objects.bulk_create([Order(reference=f"B-{i}") for i in range(3)])
        assert not OutboxEvent.objects.exists()
        outbox.publish_many(
            [
                outbox.Message(
                    "orders.events",
                    {"reference": o.reference},
                    type_name="OrderCreated",
                    key=o.reference,
                )
                for o in orders
            ]
        )
    assert OutboxEvent.objects.filter(type_name="OrderCreated").count() == 3


def test_a_proxy_publishes_through_its_concrete_models_registration_under_its_own_name() -> None:
    rush = RushOrder.objects.create(reference="R-1")
    plain = Order.objects.create(reference="P-1")
    rush_row, plain_row = OutboxEvent.objects.order_by("id")
    assert rush_row.metadata == {"action": "created", "model": "testapp.RushOrder"}
    # One object, one key, whichever class saved it: its events stay in order.
    assert rush_row.ordering_key == f"testapp.order:{rush.pk}"
    assert plain_row.metadata == {"action": "created", "model": "testapp.Order"}
    assert plain_row.ordering_key == f"testapp.order:{plain.pk}"
    rush.delete()
    deleted = OutboxEvent.objects.get(type_name="OrderCancelled")
    assert deleted.metadata == {"action": "deleted", "model": "testapp.RushOrder"}


def test_a_model_registered_without_a_mimetype_gets_its_payloads_default() -> None:
    registry.register(Note, topic="notes", mimetype=None, serializer=lambda n: n.text)  # type: ignore[arg-type]
    try:
        Note.objects.create(text="plain words")
    finally:
        registry.unregister(Note)
    row = OutboxEvent.objects.get()
    assert (bytes(row.data), row.mimetype) == (b"plain words", "text/plain")


def test_models_can_opt_in_through_settings() -> None:
    options = {"testapp.Note": {"topic": "notes", "on_update": False, "version": "2.1.0"}}
    with override_settings(ENSIGN_PUBLISHED_MODELS=options):
        registry.register_from_settings()
    try:
        with capture_outbox() as captured:
            note = Note.objects.create(text="hello")
            note.save()
        assert captured.types() == ["NoteCreated"]
        assert captured.events[0].type_version == "2.1.0"
    finally:
        registry.unregister(Note)


def note_text(note: Note) -> str:
    return f"note: {note.text}"


def note_key(note: Note) -> str:
    return note.text[:3]


def test_settings_name_the_serializer_and_key_by_dotted_path() -> None:
    entry = {"topic": "notes", "serializer": f"{__name__}.note_text", "key": f"{__name__}.note_key"}
    with override_settings(ENSIGN_PUBLISHED_MODELS={"testapp.Note": entry}):
        registry.register_from_settings()
    try:
        Note.objects.create(text="dotted")
        row = OutboxEvent.objects.get()
        assert (bytes(row.data), row.ordering_key) == (b"note: dotted", "dot")
    finally:
        registry.unregister(Note)


@pytest.mark.parametrize(
    ("data", "mimetype", "expected_data", "expected_mimetype"),
    [
        ({"a": 1}, None, b'{"a":1}', "application/json"),
        (b"\x00\x01", None, b"\x00\x01", "application/octet-stream"),
        ("hello", None, b"hello", "text/plain"),
        (b"<a/>", "application/xml", b"<a/>", "application/xml"),
    ],
)
def test_explicit_publish_encodes_data(
    data: Any, mimetype: str | None, expected_data: bytes, expected_mimetype: str
) -> None:
    row = outbox.publish("things", data, mimetype=mimetype, type_name="Thing", meta={"n": "1"})
    row.refresh_from_db()
    assert bytes(row.data) == expected_data
    assert row.mimetype == expected_mimetype
    assert row.metadata == {"n": "1"}
    assert row.ordering_key == ""


def test_explicit_publish_takes_an_sdk_event() -> None:
    event = Event(
        b'{"t": 21.5}',
        "application/json",
        schema_name="Reading",
        schema_version="1.2.0",
        meta={"station": "x"},
    )
    row = outbox.publish("weather", event, key="station-x")
    row.refresh_from_db()
    assert (row.type_name, row.type_version, row.mimetype) == (
        "Reading",
        "1.2.0",
        "application/json",
    )
    assert row.metadata == {"station": "x"}
    assert row.ordering_key == "station-x"


@pytest.mark.parametrize(
    "topic", ["", "1abc", "has space", "émoji", "a" * 513, "orders\n", "orders\r\n"]
)
def test_invalid_topic_names_are_refused_before_a_row_exists(topic: str) -> None:
    with pytest.raises(exceptions.InvalidTopicName):
        outbox.publish(topic, {"a": 1})
    assert not OutboxEvent.objects.exists()


def test_nan_and_infinity_are_published_as_strings_strict_json_parsers_take() -> None:
    def strict(constant: str) -> object:
        raise ValueError(f"{constant} is not JSON")

    data = {"temp": float("nan"), "range": (float("inf"), -float("inf"), 1.5), float("nan"): 1}
    row = outbox.publish("t", data)
    assert json.loads(bytes(row.data), parse_constant=strict) == {
        "temp": "NaN",
        "range": ["Infinity", "-Infinity", 1.5],
        "NaN": 1,
    }


def test_events_the_server_would_refuse_are_refused_at_write_time() -> None:
    with pytest.raises(exceptions.InvalidEvent):
        outbox.publish("things", b"")
    with pytest.raises(exceptions.InvalidEvent):
        outbox.publish("things", {"a": 1}, type_name="T", type_version="one")
    with pytest.raises(exceptions.UnknownMimetypeError):
        outbox.publish("things", b"x", mimetype="image/unheard-of")
    assert not OutboxEvent.objects.exists()


def test_names_longer_than_their_columns_are_refused_when_written_or_registered() -> None:
    with pytest.raises(exceptions.InvalidEvent, match="type_name"):
        outbox.publish("things", {"a": 1}, type_name="T" * 256)
    with pytest.raises(exceptions.InvalidEvent, match="type_version"):
        outbox.publish("things", {"a": 1}, type_version="1.0.0-" + "a" * 40)
    assert not OutboxEvent.objects.exists()
    with pytest.raises(exceptions.InvalidEvent, match="type_name"):
        registry.register(Note, topic="notes", on_update="NoteUpdated" + "X" * 250)
    assert registry.publication_for(Note) is None


def test_with_several_faults_the_topic_then_the_empty_data_is_reported() -> None:
    with pytest.raises(exceptions.InvalidTopicName):
        outbox.publish("bad topic", object())
    with pytest.raises(exceptions.InvalidEvent, match="empty"):
        outbox.publish("things", b"", mimetype="image/unheard-of", type_version="one")


def test_an_unknown_database_alias_is_refused() -> None:
    with pytest.raises(exceptions.OutboxDatabaseError, match="not configured"):
        outbox.publish("things", {"a": 1}, using="elsewhere")


class _OutboxLivesElsewhere:
    def allow_migrate(
        self, db: str, app_label: str, model_name: str | None = None, **hints: Any
    ) -> bool | None:
        if app_label == "django_ensign":
            return db == "other"
        return None


def test_a_database_the_outbox_table_is_not_routed_to_is_refused() -> None:
    with override_settings(DATABASE_ROUTERS=[_OutboxLivesElsewhere()]):
        with pytest.raises(
            exceptions.OutboxDatabaseError, match="does not live on database 'default'"
        ) as info:
            Order.objects.create(reference="A-4")
        assert info.value.using == "default"


def test_a_router_change_is_seen_after_the_alias_was_found_fit() -> None:
    outbox.publish("things", {"n": 1})  # "default" found fit, and remembered
    with (
        override_settings(DATABASE_ROUTERS=[_OutboxLivesElsewhere()]),
        pytest.raises(exceptions.OutboxDatabaseError),
    ):
        outbox.publish("things", {"n": 2})
    outbox.publish("things", {"n": 3})
    assert [json.loads(bytes(row.data))["n"] for row in OutboxEvent.objects.order_by("id")] == [
        1,
        3,
    ]


@pytest.mark.django_db(transaction=True)
def test_rows_written_in_autocommit_mode_are_committed() -> None:
    Order.objects.create(reference="auto")
    assert OutboxEvent.objects.filter(type_name="OrderCreated").count() == 1


def test_publish_returns_the_saved_row_as_the_database_holds_it() -> None:
    row = outbox.publish("things", {"a": 1}, type_name="Thing", meta={"n": "1"}, key=7)
    assert row.pk is not None
    assert not row._state.adding
    stored = OutboxEvent.objects.get(pk=row.pk)
    for field in OutboxEvent._meta.concrete_fields:
        assert field.value_from_object(row) == field.value_from_object(stored), field.name
    assert stored.status == "pending"
    assert stored.created is not None


def test_a_bulk_write_returns_each_row_with_its_own_id() -> None:
    messages = [outbox.Message("things", {"n": n}, key=str(n)) for n in range(2500)]
    rows = outbox.publish_many(messages)
    assert len({row.pk for row in rows}) == 2500
    stored = dict(OutboxEvent.objects.values_list("pk", "ordering_key"))
    assert all(stored[row.pk] == row.ordering_key for row in rows)


def test_a_published_through_model_publishes_removals_but_not_bulk_additions() -> None:
    """As the README and check W005 say: add() inserts through rows with bulk_create."""
    team = Team.objects.create(name="blue")
    ann = Customer.objects.create(name="ann")
    registry.register(Membership, topic="memberships")
    try:
        team.members.add(ann)
        assert not OutboxEvent.objects.filter(topic="memberships").exists()
        team.members.remove(ann)
        Membership.objects.create(team=team, customer=ann)  # one by one: published
    finally:
        registry.unregister(Membership)
    published = OutboxEvent.objects.filter(topic="memberships").order_by("id")
    assert list(published.values_list("type_name", flat=True)) == [
        "MembershipDeleted",
        "MembershipCreated",
    ]

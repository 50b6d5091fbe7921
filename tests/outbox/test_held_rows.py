"""The ``django_ensign.db.backends.postgresql`` engine: outbox rows ride their transaction's COMMIT.

The ``held`` alias is the test database through that engine; these tests commit for real.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import psycopg
import pytest
from django.conf import settings
from django.db import DatabaseError, connections, transaction
from django.test.utils import CaptureQueriesContext

from django_ensign import outbox
from django_ensign.heldrows import HeldRows
from django_ensign.models import OutboxEvent
from tests.outbox.test_notify import listener, received
from tests.testapp.models import Order

if "held" not in settings.DATABASES:
    pytest.skip("needs PostgreSQL (ENSIGN_TEST_DB=sqlite runs SQLite)", allow_module_level=True)

pytestmark = pytest.mark.django_db(
    transaction=True, databases=["default", "held", "held_server_binding"]
)

__all__ = ["listener"]  # a fixture these tests use

TABLE = OutboxEvent._meta.db_table


def references(using: str = "default") -> list[str]:
    rows = OutboxEvent.objects.using(using).order_by("id")
    return [json.loads(bytes(row.data))["reference"] for row in rows]


def outbox_statements(captured: CaptureQueriesContext) -> list[str]:
    return [query["sql"] for query in captured.captured_queries if TABLE in query["sql"]]


def test_a_published_save_sends_its_row_with_the_commit() -> None:
    with (
        CaptureQueriesContext(connections["held"]) as captured,
        transaction.atomic(using="held"),
    ):
        Order.objects.using("held").create(reference="H-1")
    statements = outbox_statements(captured)
    assert len(statements) == 1
    assert statements[0].endswith("; COMMIT")
    assert references() == ["H-1"]  # another connection sees it: committed


def test_the_next_statement_of_the_transaction_sees_the_held_rows() -> None:
    with transaction.atomic(using="held"):
        Order.objects.using("held").create(reference="H-2")
        assert references("held") == ["H-2"]
        Order.objects.using("held").create(reference="H-3")
    assert references() == ["H-2", "H-3"]


def save_then_fail(reference: str) -> None:
    with transaction.atomic(using="held"):
        Order.objects.using("held").create(reference=reference)
        raise RuntimeError("business rule failed")


def test_a_rolled_back_transaction_sends_nothing_and_the_next_one_only_its_own() -> None:
    with pytest.raises(RuntimeError):
        save_then_fail("H-dropped")
    with transaction.atomic(using="held"):
        Order.objects.using("held").create(reference="H-kept")
    assert references() == ["H-kept"]


def test_a_rolled_back_savepoint_drops_only_its_rows() -> None:
    with transaction.atomic(using="held"):
        Order.objects.using("held").create(reference="outer")
        with pytest.raises(RuntimeError):
            save_then_fail("inner")
        Order.objects.using("held").create(reference="after")
    assert references() == ["outer", "after"]


@pytest.fixture
def refuse_poison_topic() -> Iterator[None]:
    """A trigger that makes PostgreSQL refuse outbox rows for the topic ``poison``."""
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.topic = 'poison' THEN RAISE EXCEPTION 'poison refused'; END IF; "
            "RETURN NEW; END $$"
        )
        cursor.execute(
            f"CREATE TRIGGER refuse_poison BEFORE INSERT ON {TABLE} "
            "FOR EACH ROW EXECUTE FUNCTION refuse_poison()"
        )
    yield
    with connections["default"].cursor() as cursor:
        cursor.execute(f"DROP TRIGGER refuse_poison ON {TABLE}")
        cursor.execute("DROP FUNCTION refuse_poison()")


def save_with_a_poison_event() -> None:
    with transaction.atomic(using="held"):
        Order.objects.using("held").create(reference="H-lost-with-its-row")
        outbox.write([outbox.Message("poison", {"x": 1})], using="held")


def new_session(alias: str = "held") -> None:
    connections[alias].close()
    connections[alias].ensure_connection()


@pytest.fixture(params=[False, True], ids=["unprepared", "prepared"])
def prepared_statements(request: pytest.FixtureRequest) -> Iterator[bool]:
    """A new session, with psycopg's prepared statements off (Django's default) or on."""
    new_session()
    if request.param:
        connections["held"].connection.prepare_threshold = 5
    yield request.param
    new_session()


@pytest.mark.usefixtures("refuse_poison_topic", "prepared_statements")
@pytest.mark.parametrize("committed_before", [False, True], ids=["first-commit", "later-commit"])
def test_a_row_the_database_refuses_fails_the_commit_and_rolls_everything_back(
    committed_before: bool,
) -> None:
    if committed_before:
        with transaction.atomic(using="held"):
            Order.objects.using("held").create(reference="H-before")
    with pytest.raises(DatabaseError, match="poison refused"):
        save_with_a_poison_event()
    assert Order.objects.filter(reference="H-lost-with-its-row").count() == 0
    assert OutboxEvent.objects.filter(topic="poison").count() == 0
    for reference in ("H-after", "H-after-again"):  # the connection goes on working
        with transaction.atomic(using="held"):
            Order.objects.using("held").create(reference=reference)
    assert references()[-2:] == ["H-after", "H-after-again"]


def test_commits_carry_a_prepared_insert_when_prepared_statements_are_on(
    prepared_statements: bool,
) -> None:
    sent = []
    for reference in ("H-p1", "H-p2"):
        with (
            CaptureQueriesContext(connections["held"]) as captured,
            transaction.atomic(using="held"),
        ):
            Order.objects.using("held").create(reference=reference)
        [statement] = [q["sql"] for q in captured.captured_queries if q["sql"].endswith("; COMMIT")]
        sent.append(statement)
    if prepared_statements:  # prepared once per session
        assert sent[0].startswith("PREPARE ")
        assert sent[1].startswith("EXECUTE ")
    else:
        assert all(statement.startswith("WITH written AS (INSERT INTO") for statement in sent)
    assert all(statement.endswith("; COMMIT") for statement in sent)
    assert references() == ["H-p1", "H-p2"]


def test_many_rows_held_by_one_transaction_all_arrive_in_order() -> None:
    count = HeldRows.PREPARED_MAX + 5
    with transaction.atomic(using="held"):
        for i in range(count):
            Order.objects.using("held").create(reference=f"H-{i:03d}")
    assert references() == [f"H-{i:03d}" for i in range(count)]


def test_the_commit_notifies_the_relays_once(
    listener: psycopg.Connection[tuple[object, ...]],
) -> None:
    with transaction.atomic(using="held"):
        for i in range(3):
            Order.objects.using("held").create(reference=f"H-n{i}")
        assert received(listener) == 0
    assert received(listener) == 1


def test_autocommit_writes_are_sent_at_once() -> None:
    assert connections["held"].get_autocommit()
    Order.objects.using("held").create(reference="H-auto")
    assert references() == ["H-auto"]
    assert not connections["held"].ensign_held_rows  # type: ignore[attr-defined]


def test_with_server_side_binding_the_rows_go_out_just_before_the_commit() -> None:
    with (
        CaptureQueriesContext(connections["held_server_binding"]) as captured,
        transaction.atomic(using="held_server_binding"),
    ):
        Order.objects.using("held_server_binding").create(reference="H-ssb")
    statements = outbox_statements(captured)
    assert len(statements) == 1
    assert "COMMIT" not in statements[0]
    assert references() == ["H-ssb"]


def test_explicit_publish_still_returns_the_saved_row() -> None:
    with transaction.atomic(using="held"):
        row = outbox.publish("orders.events", {"reference": "H-explicit"}, using="held")
        assert row.pk is not None
    assert references() == ["H-explicit"]

"""The ``django_ensign.db.backends.postgresql`` engine: outbox rows ride their transaction's COMMIT.

The ``held`` alias is the test database through that engine; these tests commit for real.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import psycopg
import pytest
from django.conf import settings
from django.db import DatabaseError, ProgrammingError, connections, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from django_ensign import outbox, rowwrite
from django_ensign.db import prepared
from django_ensign.db.backends.postgresql.base import DatabaseWrapper
from django_ensign.models import OutboxEvent
from tests.outbox.test_notify import listener, received
from tests.testapp.models import Order

if "held" not in settings.DATABASES:
    pytest.skip("needs PostgreSQL (ENSIGN_TEST_DB=sqlite runs SQLite)", allow_module_level=True)

pytestmark = pytest.mark.django_db(
    transaction=True,
    databases=[
        "default",
        "held",
        "held_server_binding",
        "held_cursor_factory",
        "held_prepared",
        "held_pooled",
    ],
)

__all__ = ["listener"]  # a fixture these tests use

TABLE = OutboxEvent._meta.db_table


def references(using: str = "default") -> list[str]:
    rows = OutboxEvent.objects.using(using).order_by("id")
    return [json.loads(bytes(row.data))["reference"] for row in rows]


def outbox_statements(captured: CaptureQueriesContext) -> list[str]:
    """What wrote outbox rows: INSERTs, and EXECUTEs of the session's prepared one."""
    return [
        query["sql"]
        for query in captured.captured_queries
        if TABLE in query["sql"] or f"EXECUTE {prepared.NAME} (" in query["sql"]
    ]


def prepared_statements(alias: str) -> list[str]:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements")
        return [name for (name,) in cursor.fetchall()]


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


@pytest.mark.usefixtures("refuse_poison_topic")
@pytest.mark.parametrize("committed_before", [False, True], ids=["first-commit", "later-commit"])
def test_a_row_the_database_refuses_fails_the_commit_and_rolls_everything_back(
    committed_before: bool,
) -> None:
    new_session()
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


@pytest.mark.usefixtures("refuse_poison_topic")
def test_a_refused_row_in_a_rolled_back_savepoint_leaves_the_outer_transaction_whole() -> None:
    with transaction.atomic(using="held"):
        Order.objects.using("held").create(reference="H-outer")
        with pytest.raises(RuntimeError):
            save_with_a_poison_event_then_fail()
    assert references() == ["H-outer"]
    assert Order.objects.filter(reference="H-outer").count() == 1


def save_with_a_poison_event_then_fail() -> None:
    with transaction.atomic(using="held"):
        outbox.write([outbox.Message("poison", {"x": 1})], using="held")
        raise RuntimeError("business rule failed")


def test_set_rollback_sends_nothing() -> None:
    with transaction.atomic(using="held"):
        Order.objects.using("held").create(reference="H-dropped")
        transaction.set_rollback(True, using="held")
    Order.objects.using("held").create(reference="H-kept")
    assert references() == ["H-kept"]


def test_a_connection_closed_inside_a_transaction_takes_its_held_rows_with_it() -> None:
    with transaction.atomic(using="held"):
        Order.objects.using("held").create(reference="H-closed")
        connections["held"].close()
    Order.objects.using("held").create(reference="H-next-session")
    assert references() == ["H-next-session"]
    assert not Order.objects.filter(reference="H-closed").exists()


def test_many_rows_held_by_one_transaction_all_arrive_in_order() -> None:
    with transaction.atomic(using="held"):
        for i in range(30):
            Order.objects.using("held").create(reference=f"H-{i:03d}")
    assert references() == [f"H-{i:03d}" for i in range(30)]


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


def test_manual_transactions_with_the_celery_wake_up_on_still_save() -> None:
    # Django refuses on_commit() without atomic() when autocommit is off.
    held = connections["held"]
    with override_settings(ENSIGN_OUTBOX_CELERY_ON_COMMIT=True):
        held.set_autocommit(False)
        try:
            Order.objects.using("held").create(reference="H-manual")
            held.commit()
        finally:
            held.set_autocommit(True)
    assert references() == ["H-manual"]


def test_turning_autocommit_back_on_over_held_rows_is_refused_as_djangos_engine_does() -> None:
    held = connections["held"]
    held.set_autocommit(False)
    try:
        outbox.write([outbox.Message("orders", {"reference": "H-uncommitted"})], using="held")
        with pytest.raises(ProgrammingError, match="commit or roll back first"):
            held.set_autocommit(True)
        held.rollback()
    finally:
        held.set_autocommit(True)
    Order.objects.using("held").count()  # a statement under autocommit sends nothing held
    assert references() == []


@pytest.mark.parametrize("alias", ["held_server_binding", "held_cursor_factory"])
def test_with_server_side_binding_the_rows_go_out_just_before_the_commit(alias: str) -> None:
    with (
        CaptureQueriesContext(connections[alias]) as captured,
        transaction.atomic(using=alias),
    ):
        Order.objects.using(alias).create(reference="H-ssb")
    statements = outbox_statements(captured)
    assert len(statements) == 1
    assert "COMMIT" not in statements[0]
    assert references() == ["H-ssb"]


def test_more_held_rows_than_one_insert_takes_go_out_in_chunks_the_last_with_the_commit() -> None:
    count = rowwrite.CHUNK + 1
    messages = [outbox.Message("chunks", {"reference": f"C-{n}"}) for n in range(count)]
    with (
        CaptureQueriesContext(connections["held"]) as captured,
        transaction.atomic(using="held"),
    ):
        outbox.write(messages, using="held")
    statements = outbox_statements(captured)
    assert len(statements) == 2
    assert not statements[0].endswith("COMMIT")
    assert statements[1].endswith("; COMMIT")
    assert references() == [f"C-{n}" for n in range(count)]


def commit_orders(alias: str, *references: str) -> None:
    for reference in references:
        with transaction.atomic(using=alias):
            Order.objects.using(alias).create(reference=reference)


def test_asked_for_a_session_prepares_the_insert_with_its_second_commit() -> None:
    new_session("held_prepared")
    with CaptureQueriesContext(connections["held_prepared"]) as captured:
        commit_orders("held_prepared", "P-1", "P-2", "P-3")
    first, second, third = outbox_statements(captured)
    assert first.startswith("INSERT INTO")  # one commit per session would gain nothing
    assert second.startswith(f"{prepared.DROP_IF_PRESENT}; PREPARE {prepared.NAME} AS INSERT")
    assert third.startswith(f"EXECUTE {prepared.NAME} (")
    assert references() == ["P-1", "P-2", "P-3"]
    assert prepared_statements("held_prepared") == [prepared.NAME]


@pytest.mark.parametrize("alias", ["held", "held_pooled"])
def test_unless_asked_for_and_safe_nothing_is_prepared(alias: str) -> None:
    new_session(alias)
    with CaptureQueriesContext(connections[alias]) as captured:
        commit_orders(alias, "T-1", "T-2", "T-3")
    statements = outbox_statements(captured)
    assert [statement.split(" ", 1)[0] for statement in statements] == ["INSERT"] * 3
    assert prepared_statements(alias) == []
    assert references() == ["T-1", "T-2", "T-3"]


def test_held_rows_up_to_the_prepared_limit_go_out_as_executes_in_order() -> None:
    new_session("held_prepared")
    commit_orders("held_prepared", "warm-1", "warm-2")
    count = rowwrite.PREPARED_ROWS
    messages = [outbox.Message("limit", {"reference": f"L-{i:02d}"}) for i in range(count)]
    with (
        CaptureQueriesContext(connections["held_prepared"]) as captured,
        transaction.atomic(using="held_prepared"),
    ):
        outbox.write(messages, using="held_prepared")
    [statement] = outbox_statements(captured)
    assert statement.count(f"EXECUTE {prepared.NAME} (") == count
    assert references()[2:] == [f"L-{i:02d}" for i in range(count)]


def test_a_session_that_lost_its_prepared_insert_fails_one_commit_then_prepares_again() -> None:
    new_session("held_prepared")
    commit_orders("held_prepared", "D-1", "D-2")
    with connections["held_prepared"].cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")  # as a pool's session reset would
    with pytest.raises(DatabaseError, match="does not exist"):
        commit_orders("held_prepared", "D-lost")
    assert not Order.objects.filter(reference="D-lost").exists()  # rolled back whole
    commit_orders("held_prepared", "D-3", "D-4")
    assert references() == ["D-1", "D-2", "D-3", "D-4"]
    assert prepared_statements("held_prepared") == [prepared.NAME]


def test_a_server_session_that_already_holds_the_statement_is_prepared_over() -> None:
    # As a pooler hands a new client a server session an earlier client prepared in.
    new_session("held_prepared")
    connections["held_prepared"].connection.execute(f"PREPARE {prepared.NAME} AS SELECT 1")
    commit_orders("held_prepared", "R-1", "R-2", "R-3")
    assert references() == ["R-1", "R-2", "R-3"]
    assert prepared_statements("held_prepared") == [prepared.NAME]


def transaction_status(alias: str) -> psycopg.pq.TransactionStatus:
    return connections[alias].connection.info.transaction_status


@pytest.mark.usefixtures("refuse_poison_topic")
@pytest.mark.parametrize("failure", ["caught-error", "refused-row"])
def test_a_failed_commit_of_a_manual_transaction_ends_it(failure: str) -> None:
    held = connections["held"]
    held.set_autocommit(False)
    try:
        Order.objects.using("held").create(reference="M-lost")
        if failure == "caught-error":
            with contextlib.suppress(DatabaseError), held.cursor() as cursor:
                cursor.execute("SELECT 1 / 0")
        else:
            outbox.write([outbox.Message("poison", {"x": 1})], using="held")
        with pytest.raises(DatabaseError):
            held.commit()
        assert transaction_status("held") == psycopg.pq.TransactionStatus.IDLE
    finally:
        held.set_autocommit(True)  # refused while the transaction stayed aborted
    commit_orders("held", "M-after")
    assert references() == ["M-after"]
    assert not Order.objects.filter(reference="M-lost").exists()


def commit_a_poison_event(alias: str) -> None:
    with transaction.atomic(using=alias):
        outbox.write([outbox.Message("poison", {"x": 1})], using=alias)


def save_then_catch_the_savepoints_error() -> None:
    with transaction.atomic(using="held"):
        Order.objects.using("held").create(reference="S-lost")
        outbox.write([outbox.Message("poison", {"x": 1})], using="held")
        try:
            with transaction.atomic(using="held"):  # its SAVEPOINT sends the held rows
                pass
        except DatabaseError:
            pass  # the caller thinks only the inner block failed


@pytest.mark.usefixtures("refuse_poison_topic")
def test_failed_commits_leave_one_prepared_insert_in_the_session() -> None:
    new_session("held_prepared")
    commit_orders("held_prepared", "F-1", "F-2")
    for _ in range(5):
        with pytest.raises(DatabaseError, match="poison refused"):
            commit_a_poison_event("held_prepared")
    commit_orders("held_prepared", "F-3")
    assert references() == ["F-1", "F-2", "F-3"]
    assert prepared_statements("held_prepared") == [prepared.NAME]


@pytest.mark.usefixtures("refuse_poison_topic")
def test_a_caught_error_from_rows_sent_before_a_savepoint_still_fails_the_commit() -> None:
    with pytest.raises(DatabaseError, match="nothing was committed"):
        save_then_catch_the_savepoints_error()
    assert not Order.objects.filter(reference="S-lost").exists()
    commit_orders("held", "S-after")
    assert references() == ["S-after"]


def test_rows_an_execute_wrapper_kept_from_the_database_go_out_with_the_commit() -> None:
    def refuse(*args: object) -> None:
        raise RuntimeError("no queries in this block")

    with transaction.atomic(using="held"):
        Order.objects.using("held").create(reference="W-1")
        # The held row goes out before the next query, which the wrapper refuses; the
        # caller catches that, and the transaction can still commit.
        with connections["held"].execute_wrapper(refuse), pytest.raises(RuntimeError):
            Order.objects.using("held").count()
    assert references() == ["W-1"]


def test_explicit_publish_still_returns_the_saved_row() -> None:
    with transaction.atomic(using="held"):
        row = outbox.publish("orders.events", {"reference": "H-explicit"}, using="held")
        assert row.pk is not None
    assert references() == ["H-explicit"]


@pytest.mark.parametrize(
    ("extra", "options", "allowed"),
    [
        ({}, {}, False),
        ({prepared.SETTING: True}, {}, True),
        ({prepared.SETTING: True, "DISABLE_SERVER_SIDE_CURSORS": True}, {}, False),
        ({prepared.SETTING: True}, {"pool": {"reset": "a.reset.function"}}, False),
        ({prepared.SETTING: True}, {"pool": {"min_size": 2}}, True),
        ({prepared.SETTING: True}, {"server_side_binding": True}, False),
    ],
    ids=["default", "asked", "pooler", "pool-reset", "pool", "ssb"],
)
def test_which_settings_let_a_session_keep_the_prepared_insert(
    extra: dict[str, object], options: dict[str, object], allowed: bool
) -> None:
    wrapper = DatabaseWrapper({**settings.DATABASES["held"], **extra, "OPTIONS": options}, "x")
    assert prepared.allowed(wrapper) is allowed

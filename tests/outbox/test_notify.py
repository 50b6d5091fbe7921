"""PostgreSQL: a transaction that wrote outbox rows sends one NOTIFY when it commits."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from django.db import connection, transaction
from django.test import override_settings
from psycopg import sql

from django_ensign import notify, outbox
from django_ensign.conf import settings
from tests.outbox.test_writes import create_then_fail
from tests.testapp.models import Order

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("postgres_only")]


@pytest.fixture
def listener() -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    conn = psycopg.connect(autocommit=True, **notify.conninfo("default"))
    conn.execute(f"LISTEN {settings.OUTBOX_NOTIFY_CHANNEL}")
    yield conn
    conn.close()


def received(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    # A round trip first so any notification already sent has reached this session.
    conn.execute("SELECT 1")
    return len(list(conn.notifies(timeout=0.2)))


def test_one_notification_per_committed_transaction(
    listener: psycopg.Connection[tuple[object, ...]],
) -> None:
    with transaction.atomic():
        for i in range(5):
            Order.objects.create(reference=f"N-{i}")
        assert received(listener) == 0  # nothing before the commit
    assert received(listener) == 1


def test_rolled_back_transaction_notifies_nobody(
    listener: psycopg.Connection[tuple[object, ...]],
) -> None:
    with pytest.raises(RuntimeError):
        create_then_fail("N-x")
    assert received(listener) == 0
    with transaction.atomic():  # the next transaction still notifies
        Order.objects.create(reference="N-y")
    assert received(listener) == 1


def test_each_autocommit_write_notifies(listener: psycopg.Connection[tuple[object, ...]]) -> None:
    assert connection.get_autocommit()
    Order.objects.create(reference="N-a")
    Order.objects.create(reference="N-b")
    assert received(listener) == 2


@pytest.mark.parametrize("channel", ['Shop "Orders"', "orders_50%", "x%s", "orders%%"])
def test_a_channel_name_that_needs_quoting_reaches_its_listener(channel: str) -> None:
    # Writes name the channel two ways: a NOTIFY statement after a plain INSERT, and
    # pg_notify() where the INSERT returns rows; the relay LISTENs on a quoted identifier.
    conn = psycopg.connect(autocommit=True, **notify.conninfo("default"))
    try:
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        with override_settings(ENSIGN_OUTBOX_NOTIFY_CHANNEL=channel):
            with transaction.atomic():
                Order.objects.create(reference="Q-1")
            assert received(conn) == 1
            Order.objects.create(reference="Q-2")
            assert received(conn) == 1
            outbox.publish("orders", {"n": 3})
            assert received(conn) == 1
    finally:
        conn.close()

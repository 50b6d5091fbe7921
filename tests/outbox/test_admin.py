"""The outbox admin: ack status per row, counts per status, retry and requeue actions."""

from __future__ import annotations

import datetime as dt
import threading
import uuid

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.db.models import Case, Value, When
from django.db.models.functions import Now
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from django_ensign import housekeeping, outbox
from django_ensign.models import OutboxEvent, OutboxStatus

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:django_ensign_outboxevent_changelist"


@pytest.fixture
def staff() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("admin", "a@example.com", "pw"))
    return client


@pytest.fixture
def rows() -> dict[str, OutboxEvent]:
    made = {}
    for status in ["pending", "pending", "acked", "retrying", "dead"]:
        row = outbox.publish(
            "orders.events", {"s": status}, type_name="OrderCreated", key=f"k-{status}"
        )
        OutboxEvent.objects.filter(id=row.id).update(status=status)
        made[status] = row
    OutboxEvent.objects.filter(status="dead").update(nack_code=3, nack_error="topic is archived")
    OutboxEvent.objects.filter(status="acked").update(acked_at=timezone.now())
    OutboxEvent.objects.filter(id=made["retrying"].id).update(
        created=timezone.now() - dt.timedelta(hours=2),
        next_attempt_at=timezone.now() + dt.timedelta(hours=1),
    )
    return made


def test_changelist_shows_counts_per_status_and_oldest_waiting_age(
    staff: Client, rows: dict[str, OutboxEvent]
) -> None:
    sending = outbox.publish("orders.events", {"s": "in flight"}, key="k-in-flight")
    OutboxEvent.objects.filter(id=sending.id).update(
        status="in_flight",
        lease_token=uuid.uuid4(),
        lease_expires_at=timezone.now() + dt.timedelta(hours=1),
    )
    response = staff.get(reverse(CHANGELIST))
    assert response.status_code == 200
    counts = {value: count for value, _, count in response.context["ensign_status_counts"]}
    assert counts == {"pending": 2, "in_flight": 1, "acked": 1, "retrying": 1, "dead": 1}
    assert response.context["ensign_oldest_pending_age"] >= dt.timedelta(hours=2)
    html = response.content.decode()
    assert (
        '<li class="ensign-count-pending"><strong>pending</strong>: <span class="count">2</span>'
        in html
    )
    assert "ensign-status-dead" in html
    assert "topic is archived" in html
    assert "Oldest waiting event: 2" in html


def test_a_filtered_changelist_does_not_count_the_whole_table(
    staff: Client, rows: dict[str, OutboxEvent]
) -> None:
    table = OutboxEvent._meta.db_table
    with CaptureQueriesContext(connection) as queries:
        response = staff.get(reverse(CHANGELIST), {"status__exact": "pending"})
    assert response.context["cl"].result_count == 2
    whole_table_counts = [
        q["sql"]
        for q in queries.captured_queries
        if "COUNT(" in q["sql"] and table in q["sql"] and "WHERE" not in q["sql"]
    ]
    assert whole_table_counts == []


def test_the_unfiltered_changelist_counts_the_table_once(
    staff: Client, rows: dict[str, OutboxEvent]
) -> None:
    table = OutboxEvent._meta.db_table
    with CaptureQueriesContext(connection) as queries:
        response = staff.get(reverse(CHANGELIST))
    assert response.context["cl"].result_count == 5
    assert "5 outbox events" in response.content.decode()
    whole_table_counts = [
        q["sql"]
        for q in queries.captured_queries
        if "COUNT(" in q["sql"] and table in q["sql"] and "WHERE" not in q["sql"]
    ]
    assert whole_table_counts == []  # the counts per status already add the table up


def test_the_changelist_does_not_read_payloads(staff: Client, rows: dict[str, OutboxEvent]) -> None:
    OutboxEvent.objects.filter(id=rows["dead"].id).update(data=b"x" * 100_000)
    column = connection.ops.quote_name("data")
    with CaptureQueriesContext(connection) as queries:
        response = staff.get(reverse(CHANGELIST), {"status__exact": "dead"})
    assert [r.id for r in response.context["cl"].result_list] == [rows["dead"].id]
    assert "topic is archived" in response.content.decode()
    listed = [q["sql"] for q in queries.captured_queries if "ORDER BY" in q["sql"]]
    assert listed, "the page's list query was not captured"
    assert not [sql for sql in listed if column in sql]


def test_changelist_filters_by_status_and_searches_by_event_id_and_key(
    staff: Client, rows: dict[str, OutboxEvent]
) -> None:
    response = staff.get(reverse(CHANGELIST), {"status__exact": "pending"})
    assert response.context["cl"].result_count == 2
    response = staff.get(reverse(CHANGELIST), {"q": rows["dead"].event_id})
    assert [r.id for r in response.context["cl"].result_list] == [rows["dead"].id]
    response = staff.get(reverse(CHANGELIST), {"q": "k-acked"})
    assert [r.id for r in response.context["cl"].result_list] == [rows["acked"].id]


def test_detail_page_previews_the_payload_and_is_read_only(
    staff: Client, rows: dict[str, OutboxEvent]
) -> None:
    url = reverse("admin:django_ensign_outboxevent_change", args=[rows["dead"].id])
    response = staff.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert "{&quot;s&quot;:&quot;dead&quot;}" in html
    assert 'name="_save"' not in html
    assert staff.get(reverse("admin:django_ensign_outboxevent_add")).status_code == 403


def test_requeue_dead_action_makes_dead_rows_pending_again(
    staff: Client, rows: dict[str, OutboxEvent]
) -> None:
    ids = [str(r.id) for r in rows.values()]
    response = staff.post(
        reverse(CHANGELIST), {"action": "requeue_dead", "_selected_action": ids}, follow=True
    )
    assert "1 dead outbox events requeued." in response.content.decode()
    dead = OutboxEvent.objects.get(id=rows["dead"].id)
    assert (dead.status, dead.attempts, dead.nack_code) == (OutboxStatus.PENDING, 0, None)
    assert OutboxEvent.objects.get(id=rows["acked"].id).status == OutboxStatus.ACKED


def test_retry_now_action_makes_backing_off_rows_due(
    staff: Client, rows: dict[str, OutboxEvent]
) -> None:
    response = staff.post(
        reverse(CHANGELIST),
        {"action": "retry_now", "_selected_action": [str(rows["retrying"].id)]},
        follow=True,
    )
    assert "1 outbox events will be retried now." in response.content.decode()
    assert OutboxEvent.objects.get(id=rows["retrying"].id).next_attempt_at <= timezone.now()


@pytest.mark.parametrize("action", ["requeue_dead", "retry_now"])
def test_staff_who_may_only_view_outbox_events_cannot_run_the_actions(
    rows: dict[str, OutboxEvent], action: str
) -> None:
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_outboxevent"))
    client = Client()
    client.force_login(viewer)
    ids = [str(rows["dead"].id), str(rows["retrying"].id)]
    page = client.get(reverse(CHANGELIST)).content.decode()
    assert 'value="requeue_dead"' not in page
    client.post(reverse(CHANGELIST), {"action": action, "_selected_action": ids})
    dead, retrying = (OutboxEvent.objects.get(id=rows[s].id) for s in ("dead", "retrying"))
    assert dead.status == OutboxStatus.DEAD
    assert retrying.next_attempt_at > timezone.now()
    viewer.user_permissions.add(Permission.objects.get(codename="change_outboxevent"))
    assert 'value="requeue_dead"' in client.get(reverse(CHANGELIST)).content.decode()


def test_an_event_whose_relay_died_in_flight_counts_as_waiting(staff: Client) -> None:
    row = outbox.publish("orders.events", {"n": 1}, type_name="OrderCreated")
    OutboxEvent.objects.filter(id=row.id).update(
        status=OutboxStatus.IN_FLIGHT,
        created=timezone.now() - dt.timedelta(hours=3),
        lease_expires_at=timezone.now() - dt.timedelta(minutes=1),
    )
    response = staff.get(reverse(CHANGELIST))
    assert response.context["ensign_oldest_pending_age"] >= dt.timedelta(hours=3)
    OutboxEvent.objects.filter(id=row.id).update(
        lease_expires_at=timezone.now() + dt.timedelta(minutes=1)
    )
    assert staff.get(reverse(CHANGELIST)).context["ensign_oldest_pending_age"] is None


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("postgres_only")
def test_the_counts_per_status_add_up_while_a_relay_moves_rows() -> None:
    for n in range(20):
        outbox.publish("t", {"n": n})
    stop = threading.Event()
    flips: list[int] = []

    def flip_every_row() -> None:
        # Each statement moves all 20 rows at once, as a relay's batched writes move many.
        try:
            while not stop.is_set():
                flips.append(
                    OutboxEvent.objects.update(
                        status=Case(
                            When(status="pending", then=Value("acked")), default=Value("pending")
                        )
                    )
                )
        finally:
            connection.close()

    mover = threading.Thread(target=flip_every_row)
    mover.start()
    try:
        totals = {housekeeping.health().total for _ in range(200)}
    finally:
        stop.set()
        mover.join()
    assert totals == {20}
    assert set(flips) == {20}  # the rows did move while they were counted


@pytest.mark.parametrize("zone", ["Asia/Tokyo", "America/New_York"])
def test_a_stranded_rows_age_is_taken_on_the_databases_clock(zone: str) -> None:
    # Without USE_TZ this process tells local time while SQLite stamps rows in UTC: the row
    # below came out nine hours old in Tokyo, and in New York not waiting at all (its
    # lease, lapsed a minute ago, looked five hours from lapsing).
    with override_settings(USE_TZ=False, TIME_ZONE=zone):
        row = outbox.publish("orders.events", {"n": 1})
        OutboxEvent.objects.filter(id=row.id).update(
            status="in_flight",
            lease_token=uuid.uuid4(),
            lease_expires_at=Now() - Value(dt.timedelta(minutes=1)),
        )
        age = housekeeping.health().oldest_pending_age
    assert age is not None
    assert age < dt.timedelta(minutes=5)

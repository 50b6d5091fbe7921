"""Replaying dead letters: ``manage.py ensign_replay_dead`` and the admin's action and lists."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from django_ensign import dispatch
from django_ensign.handlers import InboundEvent
from django_ensign.models import DeadLetter, DeadLetterReason, DeadLetterStatus, InboxEvent
from tests.handlerapp.models import Applied, Switch

pytestmark = pytest.mark.django_db


@pytest.fixture
def dead() -> DeadLetter:
    """A flaky-handler event dead-lettered after one attempt, its handler still failing."""
    Switch.objects.create(name="flaky", on=True)
    event = InboundEvent(
        topic="sub-flaky", event_id="01J00000000000000000000DED", data=json.dumps({"n": 1}).encode()
    )
    with override_settings(ENSIGN_SUBSCRIBER_MAX_ATTEMPTS=1):
        dispatch.handle_now(event)
    return DeadLetter.objects.get()


def replay(*args: str) -> str:
    out, err = StringIO(), StringIO()
    call_command("ensign_replay_dead", *args, stdout=out, stderr=err)
    return out.getvalue() + err.getvalue()


def test_replay_reruns_the_handler_once_it_is_fixed(dead: DeadLetter) -> None:
    assert "Replayed 0, still dead 1" in replay()
    assert "failing on purpose" in replay()

    Switch.objects.filter(name="flaky").update(on=False)
    assert "Replayed 1, still dead 0" in replay()

    dead.refresh_from_db()
    assert dead.status == DeadLetterStatus.REPLAYED
    assert Applied.objects.get().event_id == dead.event_id
    assert "Replayed 0, still dead 0" in replay()  # replayed rows are not run again


def test_replay_filters_and_dry_run(dead: DeadLetter) -> None:
    Switch.objects.filter(name="flaky").update(on=False)
    assert f"{dead.pk}: " in replay("--dry-run")
    assert "Replayed 0, still dead 0" in replay("--topic", "elsewhere")
    assert "Replayed 0, still dead 0" in replay("--reason", "undecodable")
    assert "Replayed 1" in replay(str(dead.pk), "--handler", dead.handler)


def test_replaying_an_event_already_applied_marks_it_replayed(dead: DeadLetter) -> None:
    InboxEvent.objects.create(handler=dead.handler, event_id=dead.event_id, topic=dead.topic)
    assert "Replayed 1" in replay()
    assert not Applied.objects.exists()  # the inbox says it was applied: not applied again


@pytest.fixture
def staff() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("admin", "a@example.com", "pw"))
    return client


def test_admin_lists_dead_letters_with_counts_and_replays_them(
    dead: DeadLetter, staff: Client
) -> None:
    url = reverse("admin:django_ensign_deadletter_changelist")
    page = staff.get(url).content.decode()
    assert "handler kept failing" in page
    assert "failing on purpose" in page
    assert "(1)" in page  # facet counts next to the filters

    detail = staff.get(reverse("admin:django_ensign_deadletter_change", args=[dead.pk]))
    assert "{&quot;n&quot;: 1}" in detail.content.decode()

    Switch.objects.filter(name="flaky").update(on=False)
    response = staff.post(
        url, {"action": "replay_selected", "_selected_action": [dead.pk]}, follow=True
    )
    assert "Replayed 1 dead letter(s)." in response.content.decode()
    dead.refresh_from_db()
    assert dead.status == DeadLetterStatus.REPLAYED


def test_the_dead_letter_list_does_not_read_payloads_or_tracebacks(
    dead: DeadLetter, staff: Client
) -> None:
    url = reverse("admin:django_ensign_deadletter_changelist")
    with CaptureQueriesContext(connection) as queries:
        page = staff.get(url).content.decode()
    assert "failing on purpose" in page
    listed = [q["sql"] for q in queries.captured_queries if "ORDER BY" in q["sql"]]
    assert listed, "the page's list query was not captured"
    for name in ("data", "traceback"):
        assert not [sql for sql in listed if connection.ops.quote_name(name) in sql]

    Switch.objects.filter(name="flaky").update(on=False)
    with CaptureQueriesContext(connection) as queries:
        staff.post(url, {"action": "replay_selected", "_selected_action": [dead.pk]})
    dead.refresh_from_db()
    assert dead.status == DeadLetterStatus.REPLAYED
    # The replay read the payload with its row, not in a query of its own.
    payload_reads = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith("SELECT")
        and connection.ops.quote_name("data") in q["sql"]
        and connection.ops.quote_name("status") not in q["sql"]
    ]
    assert payload_reads == []


def test_a_replay_that_still_fails_reads_each_payload_once(dead: DeadLetter, staff: Client) -> None:
    url = reverse("admin:django_ensign_deadletter_changelist")
    with CaptureQueriesContext(connection) as queries:
        response = staff.post(
            url, {"action": "replay_selected", "_selected_action": [dead.pk]}, follow=True
        )
    assert "1 dead letter(s) still dead; the first is still failing: " in response.content.decode()
    data = connection.ops.quote_name("data")
    reads = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")]
    assert len([sql for sql in reads if data in sql and "deadletter" in sql]) == 1


def test_staff_who_may_only_view_dead_letters_cannot_replay_them(dead: DeadLetter) -> None:
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_deadletter"))
    client = Client()
    client.force_login(viewer)
    Switch.objects.filter(name="flaky").update(on=False)
    url = reverse("admin:django_ensign_deadletter_changelist")
    client.post(url, {"action": "replay_selected", "_selected_action": [dead.pk]})
    dead.refresh_from_db()
    assert dead.status == DeadLetterStatus.DEAD


def test_admin_lists_the_inbox(staff: Client) -> None:
    InboxEvent.objects.create(handler="h.one", event_id="E-1", topic="weather")
    page = staff.get(reverse("admin:django_ensign_inboxevent_changelist") + "?q=E-1")
    assert page.status_code == 200
    assert "h.one" in page.content.decode()
    assert staff.get(reverse("admin:django_ensign_inboxevent_add")).status_code == 403


def test_inbox_rows_cannot_be_deleted_in_the_admin(staff: Client) -> None:
    # Deleting one would let a redelivered event be applied a second time.
    row = InboxEvent.objects.create(handler="h.one", event_id="E-1", topic="weather")
    delete = reverse("admin:django_ensign_inboxevent_delete", args=[row.pk])
    assert staff.post(delete, {"post": "yes"}).status_code == 403
    changelist = reverse("admin:django_ensign_inboxevent_changelist")
    staff.post(
        changelist, {"action": "delete_selected", "_selected_action": [row.pk], "post": "yes"}
    )
    assert InboxEvent.objects.filter(pk=row.pk).exists()


def test_an_event_that_did_not_decode_stays_dead_on_replay() -> None:
    # As the subscriber passes on an Event message protobuf could not parse: its raw bytes.
    event = InboundEvent(
        topic="sub-bulk",
        event_id="01J00000000000000000000RAW",
        data=b"\x0a\x03raw\xff",
        mimetype="application/octet-stream",
        decode_error="Error parsing message",
    )
    dispatch.handle_now(event)
    row = DeadLetter.objects.get()
    before = (row.status, row.error, row.attempts)

    assert dispatch.replay(row) is False  # the raw bytes are no event to hand a handler

    row.refresh_from_db()
    assert (row.status, row.error, row.attempts) == before
    assert row.status == DeadLetterStatus.DEAD
    assert "does not decode: Error parsing message" in row.error
    assert not Applied.objects.exists()
    said = replay()
    assert f"{row.pk}: not replayable, as its data does not decode: " in said
    assert "still failing" not in said


def test_an_event_a_handler_found_undecodable_replays_once_the_handler_can_read_it() -> None:
    Switch.objects.create(name="rejects", on=True)
    event = InboundEvent(
        topic="sub-rejects",
        event_id="01J00000000000000000000REJ",
        data=json.dumps({"n": 1}).encode(),
    )
    dispatch.handle_now(event)
    row = DeadLetter.objects.get()
    assert row.reason == DeadLetterReason.UNDECODABLE
    assert row.handler  # the handler's verdict, not the subscriber's

    Switch.objects.filter(name="rejects").update(on=False)
    assert dispatch.replay(row) is True
    assert Applied.objects.filter(handler="rejects").count() == 1

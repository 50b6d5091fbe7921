"""``manage.py ensign_subscribe`` as a real process: kill -9 and restarts, SIGTERM, progress."""

from __future__ import annotations

import fcntl
from collections.abc import Callable
from pathlib import Path

import pytest
from django.db.models import Count

from django_ensign.models import DeadLetter, InboxEvent
from tests.handlerapp.models import Applied
from tests.subscriptions.conftest import SubscriberProcess, publish_sync, wait_until
from tests.support.server import EmbeddedServer

pytestmark = pytest.mark.django_db(transaction=True)

Start = Callable[..., SubscriberProcess]

#: Events of the crash test (the issue asks 5,000; the count keeps the test near 30 s).
CRASH_EVENTS = 5000


def applied(handler: str) -> int:
    return Applied.objects.filter(handler=handler).count()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_every_event_is_applied_exactly_once_across_three_kill_9s(
    fresh_server: EmbeddedServer, subscriber_process: Start
) -> None:
    publish_sync(fresh_server, "sub-bulk", [{"n": n} for n in range(CRASH_EVENTS)])

    proc = subscriber_process("sub-bulk", "--concurrency", "4", "-v", "0")
    for kill_at in (CRASH_EVENTS // 5, 2 * CRASH_EVENTS // 5, 3 * CRASH_EVENTS // 5):
        wait_until(lambda k=kill_at: applied("bulk") >= k, 90, f"{kill_at} events applied")
        proc.kill()
        proc = subscriber_process("sub-bulk", "--concurrency", "4", "-v", "0")
    wait_until(lambda: applied("bulk") >= CRASH_EVENTS, 120, "every event applied")
    assert proc.terminate() == 0, proc.output()

    assert applied("bulk") == CRASH_EVENTS
    per_event = Applied.objects.values("event_id").annotate(n=Count("id"))
    assert per_event.count() == CRASH_EVENTS
    assert not per_event.filter(n__gt=1).exists()
    assert InboxEvent.objects.count() == CRASH_EVENTS
    assert not DeadLetter.objects.exists()


@pytest.mark.timeout(120)
def test_sigterm_finishes_and_acks_the_event_in_hand(
    fresh_server: EmbeddedServer, subscriber_process: Start, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    with gate.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # the handler waits on it
        proc = subscriber_process("sub-slow", "-v", "2", ENSIGN_TEST_GATE=str(gate))
        publish_sync(fresh_server, "sub-slow", [{"n": 1}])
        wait_until(lambda: Path(f"{gate}.started").exists(), 60, "the handler to start")
        assert proc.process is not None
        proc.process.send_signal(15)
        fcntl.flock(held, fcntl.LOCK_UN)
    assert proc.process.wait(60) == 0, proc.output()
    assert applied("slow") == 1
    assert "Handled sub-slow" in proc.output()
    assert "Stopped: received 1, handled 1" in proc.output()

    # The event was acked before the exit: a restart in the same group does not see it again.
    again = subscriber_process("sub-slow", "-v", "3")
    publish_sync(fresh_server, "sub-slow", [{"n": 2}])
    wait_until(lambda: applied("slow") == 2, 60, "the second event")
    assert again.terminate() == 0
    assert "already handled" not in again.output()
    assert "received 1," in again.output()


@pytest.mark.timeout(120)
def test_from_latest_starts_a_new_group_at_the_end_and_a_restart_resumes(
    fresh_server: EmbeddedServer, subscriber_process: Start
) -> None:
    def values() -> list[str]:
        return sorted(Applied.objects.filter(handler="sync").values_list("value", flat=True))

    publish_sync(fresh_server, "sub-multi", [{"n": "old"}])
    proc = subscriber_process("sub-multi", "--from", "latest", "-v", "2")
    wait_until(lambda: "Subscribed to sub-multi" in proc.output(), 60, "the subscription")
    publish_sync(fresh_server, "sub-multi", [{"n": "new"}])
    wait_until(lambda: applied("sync") == 1, 60, "the new event")
    assert proc.terminate() == 0, proc.output()
    assert "only applies with --no-group" not in proc.output()
    assert values() == ['{"n": "new"}']

    publish_sync(fresh_server, "sub-multi", [{"n": "while-away"}])
    again = subscriber_process("sub-multi", "--from", "latest", "-v", "2")
    wait_until(lambda: applied("sync") == 2, 60, "the event published while it was away")
    assert again.terminate() == 0, again.output()
    assert values() == ['{"n": "new"}', '{"n": "while-away"}']


def test_a_topic_without_handlers_is_refused(
    fresh_server: EmbeddedServer, subscriber_process: Start
) -> None:
    proc = subscriber_process("no-such-handlers")
    assert proc.process is not None
    assert proc.process.wait(60) != 0
    assert "no handler is registered for no-such-handlers" in proc.output()


def test_a_topic_the_server_does_not_have_is_named_as_such(
    fresh_server: EmbeddedServer, subscriber_process: Start
) -> None:
    proc = subscriber_process("sub-multi", "sub-flaky")
    wait_until(
        lambda: "no topic 'sub-multi', 'sub-flaky' exists on the server yet" in proc.output(),
        30,
        "the subscriber to say no topic exists (the server says 'no topics available')",
    )
    # One exists now: the stream opens without the other, which the server leaves out.
    publish_sync(fresh_server, "sub-multi", [{"n": 1}])
    wait_until(
        lambda: "Topic 'sub-flaky' does not exist on the server yet" in proc.output(),
        30,
        "the subscriber to name the topic still missing",
    )
    assert proc.terminate() == 0


def test_wrong_credentials_end_the_command_with_a_clear_error(
    fresh_server: EmbeddedServer, subscriber_process: Start
) -> None:
    proc = subscriber_process("sub-multi", ENSIGN_CLIENT_SECRET="not-the-secret")
    assert proc.process is not None
    assert proc.process.wait(60) != 0
    assert "cannot subscribe" in proc.output()

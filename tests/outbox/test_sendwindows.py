"""Send windows: how long a relay may still send a claim's events."""

from __future__ import annotations

import uuid

from django_ensign.sendwindows import SendWindows, keepalive_timeout


def test_a_claims_events_go_out_within_80_percent_of_its_lease() -> None:
    windows = SendWindows(lease_seconds=30.0, publish_timeout=60.0)
    token = uuid.uuid4()
    started = windows.clock()
    windows.open(token, started)
    assert windows.deadline(token).at == started + 24.0
    assert windows.lease_certain(token)


def test_a_publish_call_sends_no_later_than_its_publish_timeout() -> None:
    windows = SendWindows(lease_seconds=300.0, publish_timeout=2.0)
    token = uuid.uuid4()
    windows.open(token, windows.clock())
    before = windows.clock()
    deadline = windows.deadline(token)
    assert before + 2.0 <= deadline.at <= windows.clock() + 2.0
    capped = deadline.at
    windows.renewed([token], windows.clock())  # the lease goes on; the timeout does not
    assert deadline.at == capped
    assert windows.lease_certain(token)


def test_a_renewal_moves_deadlines_on_only_while_the_lease_is_certain() -> None:
    windows = SendWindows(lease_seconds=30.0, publish_timeout=600.0)
    kept, lapsed = uuid.uuid4(), uuid.uuid4()
    now = windows.clock()
    windows.open(kept, now - 10.0)
    windows.open(lapsed, now - 25.0)  # 24 s of certainty ran out a second ago
    kept_deadline, lapsed_deadline = windows.deadline(kept), windows.deadline(lapsed)

    windows.renewed([kept, lapsed], windows.clock())
    assert kept_deadline.at >= now + 24.0
    assert lapsed_deadline.passed()  # the rows may be another relay's by now
    assert not windows.lease_certain(lapsed)


def test_a_closed_claim_sends_nothing_more() -> None:
    windows = SendWindows(lease_seconds=30.0, publish_timeout=60.0)
    token = uuid.uuid4()
    windows.open(token, windows.clock())
    deadline = windows.deadline(token)
    windows.close(token)
    assert deadline.passed()
    assert windows.deadline(token).passed()
    assert not windows.lease_certain(token)


def test_the_relays_keepalive_timeout_is_a_tenth_of_the_lease_from_1_to_20_seconds() -> None:
    assert [keepalive_timeout(lease) for lease in (2.0, 30.0, 600.0)] == [1.0, 3.0, 20.0]

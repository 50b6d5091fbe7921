"""Channel settings every connection gets (PROTOCOL.md §6)."""

from __future__ import annotations

from django_ensign.client.connection import CHANNEL_OPTIONS

OPTIONS = dict(CHANNEL_OPTIONS)


def test_keepalive_pings_no_more_often_than_every_five_minutes() -> None:
    assert OPTIONS["grpc.keepalive_time_ms"] >= 300_000
    assert OPTIONS["grpc.keepalive_permit_without_calls"] == 0


def test_messages_larger_than_the_event_limit_are_received() -> None:
    assert OPTIONS["grpc.max_receive_message_length"] > 5_243_000
    assert OPTIONS["grpc.max_send_message_length"] > 5_243_000

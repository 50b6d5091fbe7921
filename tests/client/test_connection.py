"""Channel settings every connection gets (PROTOCOL.md §6)."""

from __future__ import annotations

import pytest

from django_ensign.client import Ensign
from django_ensign.client.connection import CHANNEL_OPTIONS
from django_ensign.client.exceptions import ConfigurationError

OPTIONS = dict(CHANNEL_OPTIONS)


def test_keepalive_pings_no_more_often_than_every_five_minutes() -> None:
    assert OPTIONS["grpc.keepalive_time_ms"] >= 300_000
    assert OPTIONS["grpc.keepalive_permit_without_calls"] == 0


def test_messages_larger_than_the_event_limit_are_received() -> None:
    assert OPTIONS["grpc.max_receive_message_length"] > 5_243_000
    assert OPTIONS["grpc.max_send_message_length"] > 5_243_000


def channel_options(client: Ensign) -> dict[str, object]:
    return dict(client._connection._options)


def test_the_keepalive_timeout_is_20_s_unless_set() -> None:
    # gRPC also sets the keepalive timeout as the socket's TCP_USER_TIMEOUT on Linux.
    client = Ensign("a" * 32, "b" * 64, endpoint="127.0.0.1:1")
    assert channel_options(client)["grpc.keepalive_timeout_ms"] == 20_000


def test_the_keepalive_timeout_is_the_clients_to_set() -> None:
    client = Ensign("a" * 32, "b" * 64, endpoint="127.0.0.1:1", keepalive_timeout=3.0)
    assert channel_options(client)["grpc.keepalive_timeout_ms"] == 3_000
    with pytest.raises(ConfigurationError, match="keepalive_timeout"):
        Ensign("a" * 32, "b" * 64, endpoint="127.0.0.1:1", keepalive_timeout=float("nan"))

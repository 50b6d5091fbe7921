"""Which publish failures are the events' own (counted) and which are Ensign's (given back)."""

from __future__ import annotations

import pytest

from django_ensign.client import exceptions as sdk
from django_ensign.publishfailures import Trouble, trouble


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (sdk.PublishTimeout("no ack"), None),  # on an open stream: the event's attempt
        (sdk.StreamDown("no ack, no stream"), Trouble.UNREACHABLE),
        (sdk.NackError("refused"), None),
        (sdk.InvalidEvent("bad"), None),
        (sdk.AuthServiceUnreachable("down or HTTP 503"), Trouble.UNREACHABLE),
        (sdk.Unavailable("restarting"), Trouble.UNREACHABLE),
        (sdk.Unauthenticated("token refused: skewed clock"), Trouble.UNREACHABLE),
        (ConnectionRefusedError(), Trouble.UNREACHABLE),
        (sdk.AuthenticationError("HTTP 403"), Trouble.REFUSED),
        (sdk.PermissionDenied("no publisher permission"), Trouble.REFUSED),
        (sdk.MissingCredentials("none"), Trouble.REFUSED),
    ],
)
def test_each_failure_is_classified(error: BaseException, expected: Trouble | None) -> None:
    assert trouble(error) is expected

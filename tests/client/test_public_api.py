"""The SDK's public names, and that it never imports Django."""

from __future__ import annotations

import subprocess
import sys

import django_ensign.client as client


def test_public_names_are_pinned() -> None:
    assert client.__all__ == sorted(client.__all__)
    assert set(client.__all__) == {
        "Ack", "ClientClosed", "DeduplicationStrategy", "Ensign", "EnsignError", "Event",
        "EventState", "FlushTimeout", "MissingCredentials", "Nack", "NackCode", "OffsetPosition",
        "Outcome", "ProjectInfo", "PublishTimeout", "QueryCursor", "ReceivedEvent",
        "SendDeadline", "SendDeadlinePassed", "ServerStatus", "ServiceStatus", "Subscription",
        "Topic", "TopicState", "UnknownTopic",
    }  # fmt: skip
    for name in client.__all__:
        assert getattr(client, name) is not None


def test_sdk_and_sync_facade_import_without_django() -> None:
    code = (
        "import sys, django_ensign.client, django_ensign.client.sync; "
        "assert 'django' not in sys.modules, sorted(m for m in sys.modules if 'django' in m)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr

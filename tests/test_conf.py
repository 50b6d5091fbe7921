"""The settings object: read from Django, remembered, and read again when a setting changes."""

from __future__ import annotations

import pytest
from django.test import override_settings

from django_ensign.conf import settings


def test_an_overridden_setting_is_seen_and_its_end_restores_the_default() -> None:
    assert settings.OUTBOX_BATCH_SIZE == 500  # read once, so remembered
    with override_settings(ENSIGN_OUTBOX_BATCH_SIZE=7):
        assert settings.OUTBOX_BATCH_SIZE == 7
    assert settings.OUTBOX_BATCH_SIZE == 500


def test_a_setting_django_lacks_falls_back_to_the_environment_on_every_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ENSIGN_ENDPOINT", raising=False)
    assert settings.ENDPOINT == "127.0.0.1:5356"  # Django has no ENSIGN_ENDPOINT here
    monkeypatch.setenv("ENSIGN_ENDPOINT", "ensign.example.com:443")
    assert settings.ENDPOINT == "ensign.example.com:443"


@pytest.mark.parametrize(("value", "expected"), [("False", False), ("0", False), ("true", True)])
def test_a_yes_no_setting_read_from_the_environment_as_text(value: str, expected: bool) -> None:
    # os.environ.get(...) gives text: "False" must not read as a non-empty, true string.
    with override_settings(
        ENSIGN_OUTBOX_NOTIFY=value,
        ENSIGN_OUTBOX_CREATE_TOPICS=value,
        ENSIGN_OUTBOX_CELERY_ON_COMMIT=value,
    ):
        assert settings.OUTBOX_NOTIFY is expected
        assert settings.OUTBOX_CREATE_TOPICS is expected
        assert settings.OUTBOX_CELERY_ON_COMMIT is expected

"""System checks of the subscriber: one test per id."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core import checks
from django.test import override_settings

import django_ensign
from django_ensign.handlers import InboundEvent, registry


def ids() -> list[str]:
    return [message.id or "" for message in checks.run_checks(tags=["django_ensign"])]


@pytest.fixture(params=["9 not a topic", "weather\n"])
def bad_topic_handler(request: pytest.FixtureRequest) -> Iterator[None]:
    @django_ensign.handler(request.param, name="checks.bad")
    def bad(event: InboundEvent) -> None:
        pass

    yield
    registry.unregister("checks.bad")


def test_the_test_settings_pass_the_subscriber_checks() -> None:
    assert not [i for i in ids() if i[-3:-1] in {"02", "03"}]


def test_e020_a_handler_topic_that_is_not_a_topic_name(bad_topic_handler: None) -> None:
    assert "django_ensign.E020" in ids()


@override_settings(ENSIGN_SUBSCRIBER_CONCURRENCY=0)
def test_e021_concurrency_below_one() -> None:
    assert "django_ensign.E021" in ids()


@pytest.mark.parametrize(
    ("setting", "check_id"),
    [
        ("ENSIGN_SUBSCRIBER_CONCURRENCY", "E021"),
        ("ENSIGN_SUBSCRIBER_MAX_ATTEMPTS", "E022"),
        ("ENSIGN_SUBSCRIBER_BACKOFF_MAX", "E023"),
        ("ENSIGN_SUBSCRIBER_WINDOW", "E024"),
    ],
)
@pytest.mark.parametrize("value", ["many", float("inf")])
def test_a_setting_that_is_not_a_finite_number_is_reported_under_its_own_id(
    setting: str, check_id: str, value: object
) -> None:
    with override_settings(**{setting: value}):
        assert [i for i in ids() if i[-3:-1] == "02"] == [f"django_ensign.{check_id}"]


@pytest.mark.parametrize("setting", ["ENSIGN_SUBSCRIBER_WINDOW", "ENSIGN_SUBSCRIBER_BATCH_SIZE"])
def test_e024_a_negative_window_or_batch_size(setting: str) -> None:
    with override_settings(**{setting: -1}):
        assert "django_ensign.E024" in ids()
    with override_settings(**{setting: 0}):
        assert "django_ensign.E024" not in ids()


@override_settings(ENSIGN_SUBSCRIBER_MAX_ATTEMPTS=0)
def test_e022_no_attempts() -> None:
    assert "django_ensign.E022" in ids()


@override_settings(ENSIGN_SUBSCRIBER_BACKOFF_BASE=-1)
def test_e023_negative_backoff() -> None:
    assert "django_ensign.E023" in ids()


@pytest.mark.parametrize(
    "setting",
    [
        "ENSIGN_SUBSCRIBER_BACKOFF_BASE",
        "ENSIGN_SUBSCRIBER_BACKOFF_MAX",
        "ENSIGN_SUBSCRIBER_RECONNECT_MAX",
    ],
)
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_e023_a_wait_that_is_not_a_finite_number(setting: str, value: float) -> None:
    with override_settings(**{setting: value}):
        assert "django_ensign.E023" in ids()


@pytest.mark.parametrize("wait", [0, -1])
def test_e023_no_wait_between_reconnects(wait: float) -> None:
    with override_settings(ENSIGN_SUBSCRIBER_RECONNECT_MAX=wait):
        assert "django_ensign.E023" in ids()


@override_settings(ENSIGN_SUBSCRIBER_MAX_ATTEMPTS=10, ENSIGN_SUBSCRIBER_BACKOFF_MAX=60)
def test_w020_retries_outlast_the_delivery_timeout() -> None:
    assert "django_ensign.W020" in ids()


@override_settings(CELERY_BROKER_URL="amqp://guest@localhost//")
def test_w021_amqp_broker_without_publisher_confirms() -> None:
    assert "django_ensign.W021" in ids()


@override_settings(
    CELERY_BROKER_URL="amqp://guest@localhost//",
    CELERY_BROKER_TRANSPORT_OPTIONS={"confirm_publish": True},
)
def test_w021_is_quiet_with_confirms() -> None:
    assert "django_ensign.W021" not in ids()

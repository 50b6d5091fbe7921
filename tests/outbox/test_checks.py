"""`manage.py check` names what is wrong with the connection and outbox settings."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps
from django.core.checks import CheckMessage
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connections
from django.test import override_settings

from django_ensign import checks, registry
from tests.testapp.models import Membership, Note, Order

GOOD = {
    "ENSIGN_ENDPOINT": "127.0.0.1:5356",
    "ENSIGN_AUTH_URL": "http://127.0.0.1:8088",
    "ENSIGN_CLIENT_ID": "id",
    "ENSIGN_CLIENT_SECRET": "secret",
    "ENSIGN_INSECURE": True,
}


def ids(**overrides: Any) -> list[str]:
    with override_settings(**{**GOOD, **overrides}):
        found: list[CheckMessage] = checks.check_connection() + checks.check_outbox()
    return sorted(str(m.id) for m in found)


def test_good_settings_pass() -> None:
    assert ids() == []


@pytest.mark.parametrize(
    "endpoint",
    ["localhost", "host:", ":5356", "host:port", "host:70000", "http://127.0.0.1:5356"],
)
def test_e001_bad_endpoint(endpoint: str) -> None:
    assert ids(ENSIGN_ENDPOINT=endpoint) == ["django_ensign.E001"]


def test_e002_missing_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENSIGN_CLIENT_ID", raising=False)
    monkeypatch.delenv("ENSIGN_CLIENT_SECRET", raising=False)
    assert ids(ENSIGN_CLIENT_ID=None, ENSIGN_CLIENT_SECRET=None) == ["django_ensign.E002"]
    assert ids(ENSIGN_CLIENT_SECRET="") == ["django_ensign.E002"]


def test_e002_half_the_credentials_beside_a_credentials_file(tmp_path: Path) -> None:
    # The client would pair the id set here with the file's secret: a refused login.
    creds = tmp_path / "credentials.json"
    creds.write_text(json.dumps({"ClientID": "f" * 32, "ClientSecret": "s" * 64}))
    file_only = {"ENSIGN_CREDENTIALS_FILE": str(creds), "ENSIGN_CLIENT_SECRET": None}
    assert ids(**file_only, ENSIGN_CLIENT_ID=None) == []
    assert ids(**file_only) == ["django_ensign.E002"]


def test_e003_unusable_credentials_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"ClientID": "x"}))
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"ClientID": "x", "ClientSecret": "y"}))
    base = {"ENSIGN_CLIENT_ID": None, "ENSIGN_CLIENT_SECRET": None}
    assert ids(**base, ENSIGN_CREDENTIALS_FILE=str(tmp_path)) == ["django_ensign.E003"]
    assert ids(**base, ENSIGN_CREDENTIALS_FILE=str(empty)) == ["django_ensign.E003"]
    assert ids(**base, ENSIGN_CREDENTIALS_FILE=str(good)) == []


def test_w002_credentials_file_the_server_has_not_written_yet(tmp_path: Path) -> None:
    missing = tmp_path / "server-data" / "credentials.json"
    base = {"ENSIGN_CLIENT_ID": None, "ENSIGN_CLIENT_SECRET": None}
    assert ids(**base, ENSIGN_CREDENTIALS_FILE=str(missing)) == ["django_ensign.W002"]
    # The other connection settings are still checked.
    assert ids(
        **base, ENSIGN_CREDENTIALS_FILE=str(missing), ENSIGN_AUTH_URL="auth.example.com"
    ) == ["django_ensign.E006", "django_ensign.W002"]


def test_e004_invalid_topic_name_of_a_published_model() -> None:
    assert ids(ENSIGN_PUBLISHED_MODELS={"testapp.Note": {"topic": "9 lives"}}) == [
        "django_ensign.E004"
    ]


def test_e004_a_topic_that_is_not_a_string() -> None:
    assert ids(ENSIGN_PUBLISHED_MODELS={"testapp.Note": {"topic": None}}) == ["django_ensign.E004"]


def test_e005_unknown_published_model() -> None:
    assert ids(ENSIGN_PUBLISHED_MODELS={"testapp.Nope": {"topic": "t"}}) == ["django_ensign.E005"]
    assert ids(ENSIGN_PUBLISHED_MODELS={"not-a-label": {"topic": "t"}}) == ["django_ensign.E005"]


def test_e006_auth_url_not_http() -> None:
    assert ids(ENSIGN_AUTH_URL="auth.example.com") == ["django_ensign.E006"]


def test_e007_malformed_published_model_entry() -> None:
    assert ids(ENSIGN_PUBLISHED_MODELS={"testapp.Note": {"on_create": "X"}}) == [
        "django_ensign.E007"
    ]
    assert ids(ENSIGN_PUBLISHED_MODELS={"testapp.Note": {"topic": "t", "colour": "red"}}) == [
        "django_ensign.E007"
    ]


@pytest.mark.parametrize(
    "setting",
    [
        "ENSIGN_OUTBOX_BATCH_SIZE",
        "ENSIGN_OUTBOX_MAX_IN_FLIGHT",
        "ENSIGN_OUTBOX_MAX_ATTEMPTS",
        "ENSIGN_OUTBOX_LEASE_SECONDS",
        "ENSIGN_OUTBOX_POLL_SECONDS",
    ],
)
def test_e008_non_positive_relay_settings(setting: str) -> None:
    assert ids(**{setting: 0}) == ["django_ensign.E008"]
    assert ids(**{setting: float("inf")}) == ["django_ensign.E008"]  # not a crash
    assert ids(**{setting: float("nan")}) == ["django_ensign.E008"]
    assert ids(**{setting: "500a"}) == ["django_ensign.E008"]  # reported, not a crash


@pytest.mark.parametrize("setting", ["ENSIGN_OUTBOX_BACKOFF_BASE", "ENSIGN_OUTBOX_BACKOFF_MAX"])
def test_e008_a_negative_or_non_numeric_relay_backoff(setting: str) -> None:
    assert ids(**{setting: -1}) == ["django_ensign.E008"]
    assert ids(**{setting: "soon"}) == ["django_ensign.E008"]
    assert ids(**{setting: float("nan")}) == ["django_ensign.E008"]
    assert ids(**{setting: float("inf")}) == ["django_ensign.E008"]
    assert ids(**{setting: 0}) == []


def test_e013_the_celery_trigger_without_celery(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ids(ENSIGN_OUTBOX_CELERY_ON_COMMIT=True) == []
    monkeypatch.setitem(sys.modules, "celery", None)  # what import sees where it is missing
    assert ids(ENSIGN_OUTBOX_CELERY_ON_COMMIT=True) == ["django_ensign.E013"]
    assert ids(ENSIGN_OUTBOX_CELERY_ON_COMMIT=False) == []


def test_e008_a_lock_file_directory_that_cannot_take_the_lock(tmp_path: Path) -> None:
    # Only databases without advisory locks (SQLite here) take the drain lock as a file.
    file_locks = any(connections[alias].vendor != "postgresql" for alias in connections)
    expected = ["django_ensign.E008"] if file_locks else []
    assert ids(ENSIGN_OUTBOX_LOCK_FILE_DIR=str(tmp_path / "missing")) == expected
    assert ids(ENSIGN_OUTBOX_LOCK_FILE_DIR=str(tmp_path)) == []


@pytest.mark.parametrize("value", [["testapp.Note"], "testapp.Note"])
def test_e007_a_published_models_setting_that_is_not_a_dict(
    value: object, caplog: pytest.LogCaptureFixture
) -> None:
    # Reported, and start-up goes on (it used to crash every manage.py command in ready()),
    # logging it for processes that run no checks.
    with override_settings(ENSIGN_PUBLISHED_MODELS=value):
        apps.get_app_config("django_ensign").ready()
    assert "ENSIGN_PUBLISHED_MODELS is not a dict" in caplog.text
    assert ids(ENSIGN_PUBLISHED_MODELS=value) == ["django_ensign.E007"]
    assert ids(ENSIGN_PUBLISHED_MODELS=None) == []  # none, as if unset


@pytest.mark.parametrize(
    "setting",
    [
        "ENSIGN_OUTBOX_LEASE_SECONDS",
        "ENSIGN_OUTBOX_POLL_SECONDS",
        "ENSIGN_OUTBOX_BACKOFF_BASE",
        "ENSIGN_OUTBOX_BACKOFF_MAX",
    ],
)
def test_e008_a_wait_longer_than_the_database_clock_can_add(setting: str) -> None:
    # Far past what anybody means (a unit mistaken); 1e15 s would overflow the clock.
    assert ids(**{setting: 1000 * 365 * 24 * 3600}) == ["django_ensign.E008"]
    assert ids(**{setting: 30 * 24 * 3600}) == []


@pytest.mark.parametrize(
    "options", [{"version": "1"}, {"mimetype": "nonsense"}, {"mimetype": ["application/json"]}]
)
def test_e009_a_mimetype_or_version_every_event_would_fail_on(options: dict[str, object]) -> None:
    assert ids(ENSIGN_PUBLISHED_MODELS={"testapp.Note": {"topic": "t", **options}}) == [
        "django_ensign.E009"
    ]


POSTGRES = any(connections[alias].vendor == "postgresql" for alias in connections)


@pytest.mark.skipif(not POSTGRES, reason="a project with a PostgreSQL database")
@pytest.mark.parametrize("channel", ["", "c" * 64, "é" * 32, "a\x00b"])
def test_e010_a_notify_channel_postgresql_cannot_name(channel: str) -> None:
    assert ids(ENSIGN_OUTBOX_NOTIFY_CHANNEL=channel) == ["django_ensign.E010"]
    assert ids(ENSIGN_OUTBOX_NOTIFY_CHANNEL="c" * 63) == []
    assert ids(ENSIGN_OUTBOX_NOTIFY_CHANNEL=channel, ENSIGN_OUTBOX_NOTIFY=False) == []


@pytest.mark.skipif(POSTGRES, reason="a project with SQLite databases only")
def test_e010_stays_quiet_where_no_database_notifies() -> None:
    assert ids(ENSIGN_OUTBOX_NOTIFY_CHANNEL="c" * 64) == []


@pytest.mark.skipif(not POSTGRES, reason="a project with a PostgreSQL database")
def test_w004_postgresql_without_psycopg_3(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ids() == []
    monkeypatch.setitem(sys.modules, "psycopg", None)
    assert ids() == ["django_ensign.W004"]


@pytest.mark.parametrize(
    "entry",
    [{"on_create": "X"}, {"topic": "t", "colour": "red"}, "notes", {"topic": "t", "version": "1"}],
)
def test_a_malformed_settings_entry_does_not_stop_start_up(entry: object) -> None:
    # AppConfig.ready registers the settings' models: it must leave these to `check`.
    with override_settings(ENSIGN_PUBLISHED_MODELS={"testapp.Note": entry}):
        registry.register_from_settings()
    assert registry.publication_for(Note) is None


def test_w001_plain_text_to_a_remote_server() -> None:
    assert ids(ENSIGN_ENDPOINT="ensign.example.com:5356") == ["django_ensign.W001"]
    assert ids(ENSIGN_ENDPOINT="ensign.example.com:443", ENSIGN_INSECURE=False) == []


@pytest.mark.skipif(not POSTGRES, reason="the test settings' PostgreSQL aliases")
def test_w003_a_prepared_insert_asked_for_where_it_cannot_take_effect() -> None:
    found = checks.check_prepared_insert()
    assert {str(message.id) for message in found} == {"django_ensign.W003"}
    # held_prepared asks where it works; these two cannot, and say why.
    assert sorted(message.msg.split(" sets ")[0] for message in found) == [
        "DATABASES['held_pooled']",
        "DATABASES['plain_prepared']",
    ]
    reasons = " ".join(message.msg for message in found)
    assert "DISABLE_SERVER_SIDE_CURSORS" in reasons
    assert "only the django_ensign.db.backends.postgresql engine" in reasons


def test_an_alias_whose_driver_is_missing_does_not_crash_the_checks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import django.db
    from django.db.utils import ConnectionHandler

    # mysqlclient is not installed here: loading that alias's backend raises.
    databases = {
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
        "reports": {"ENGINE": "django.db.backends.mysql", "ENSIGN_PREPARED_INSERT": True},
    }
    monkeypatch.setattr(django.db, "connections", ConnectionHandler(databases))
    assert ids(ENSIGN_OUTBOX_NOTIFY_CHANNEL="c" * 64) == []
    assert checks.check_prepared_insert() == []


def test_manage_py_check_fails_with_the_named_id() -> None:
    with (
        override_settings(**{**GOOD, "ENSIGN_ENDPOINT": "nowhere"}),
        pytest.raises(SystemCheckError, match=r"django_ensign\.E001"),
    ):
        call_command("check")


def test_registering_a_model_with_a_bad_topic_fails_at_once() -> None:
    from django_ensign.exceptions import InvalidTopicName

    with pytest.raises(InvalidTopicName):
        registry.register(Note, topic="bad topic")
    assert registry.publication_for(Note) is None


def test_registering_a_model_twice_fails_and_keeps_the_first_registration() -> None:
    from django_ensign.exceptions import AlreadyRegistered

    with pytest.raises(AlreadyRegistered, match=r"already publishes to 'orders\.events'"):
        registry.register(Order, topic="orders2")
    assert registry.publication_for(Order).topic == "orders.events"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "options",
    [{"version": "1.0.0-" + "a" * 40}, {"on_update": "X" * 256}],
)
def test_e009_a_name_longer_than_its_outbox_column(options: dict[str, str]) -> None:
    entry = {"testapp.Note": {"topic": "notes", **options}}
    assert ids(ENSIGN_PUBLISHED_MODELS=entry) == ["django_ensign.E009"]


def test_e011_a_model_registered_in_code_and_named_in_the_settings() -> None:
    listed = {"testapp.Order": {"topic": "orders2"}}
    assert ids(ENSIGN_PUBLISHED_MODELS=listed) == ["django_ensign.E011"]
    # Start-up goes on with the code's registration, which `check` said wins.
    with override_settings(ENSIGN_PUBLISHED_MODELS=listed):
        registry.register_from_settings()
    publication = registry.publication_for(Order)
    assert publication is not None
    assert (publication.topic, publication.on_delete) == ("orders.events", "OrderCancelled")


def test_registering_the_settings_again_replaces_their_own_registrations() -> None:
    # AppConfig.ready may run more than once (some test runners call it again).
    try:
        for topic in ("notes", "notes2"):
            with override_settings(ENSIGN_PUBLISHED_MODELS={"testapp.Note": {"topic": topic}}):
                registry.register_from_settings()
        assert registry.publication_for(Note).topic == "notes2"  # type: ignore[union-attr]
    finally:
        registry.unregister(Note)


@pytest.mark.parametrize("options", [{"version": "1"}, {"mimetype": "nonsense"}])
def test_registering_with_a_bad_version_or_mimetype_fails_at_once(options: dict[str, str]) -> None:
    from django_ensign.exceptions import EnsignError

    with pytest.raises(EnsignError):
        registry.register(Note, topic="notes", **options)  # type: ignore[arg-type]
    assert registry.publication_for(Note) is None


def test_each_outbox_check_id_is_used_for_one_problem_only() -> None:
    source = Path(checks.__file__).read_text()
    section = source.split("# === outbox and connection checks")[1].split("# === end outbox")[0]
    used = re.findall(r'id="(django_ensign\.[EW]\d{3})"', section)
    numbers = {int(i[-3:]) for i in used}
    assert all(1 <= n <= 19 for n in numbers), "outbox ids live in 001-019"
    # E003 is raised from two branches of the same problem (an unusable credentials file).
    assert sorted(set(used)) == [
        "django_ensign.E001", "django_ensign.E002", "django_ensign.E003", "django_ensign.E004",
        "django_ensign.E005", "django_ensign.E006", "django_ensign.E007", "django_ensign.E008",
        "django_ensign.E009", "django_ensign.E010", "django_ensign.E011", "django_ensign.E012",
        "django_ensign.E013", "django_ensign.E014", "django_ensign.E015",
        "django_ensign.W001", "django_ensign.W002", "django_ensign.W003", "django_ensign.W004",
        "django_ensign.W005",
    ]  # fmt: skip
    # The two E003 branches, E007 reused for options and for a setting that is not a dict,
    # E008 for non-numbers, non-finite numbers and the lock's directory too, E002 for half
    # the credentials, E004 for a topic that is not a string.
    assert len(used) == len(set(used)) + 8


@pytest.mark.parametrize("option", ["serializer", "key"])
@pytest.mark.parametrize("value", ["tests.testapp.nowhere.payload", "tests.testapp.models", 42])
def test_e012_a_serializer_or_key_that_is_not_a_function(option: str, value: object) -> None:
    entry = {"testapp.Note": {"topic": "notes", option: value}}
    assert ids(ENSIGN_PUBLISHED_MODELS=entry) == ["django_ensign.E012"]
    dotted = {"testapp.Note": {"topic": "notes", option: "json.dumps"}}
    assert ids(ENSIGN_PUBLISHED_MODELS=dotted) == []


def test_w005_a_published_through_model_is_named() -> None:
    registry.register(Membership, topic="memberships")
    try:
        assert ids() == ["django_ensign.W005"]
    finally:
        registry.unregister(Membership)
    assert ids() == []


@pytest.mark.parametrize("setting", ["ENSIGN_SERVER_PORT", "ENSIGN_SERVER_AUTH_PORT"])
@pytest.mark.parametrize("value", ["x", 0, 70000, 1.5j])
def test_e015_the_embedded_servers_ports(setting: str, value: object) -> None:
    with override_settings(**{setting: value}):
        assert [m.id for m in checks.check_server()] == ["django_ensign.E015"]
    # As os.environ.get gives them: a number as text, or None for the default.
    for fine in ("6000", None):
        with override_settings(**{setting: fine}):
            assert checks.check_server() == []


def test_e014_an_sqlite_older_than_the_claim_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.db import connection

    from django_ensign import exceptions, outbox

    if connection.vendor != "sqlite":
        pytest.skip("an SQLite database's library version")
    # This machine's SQLite is newer; Django 5.2 also runs on 3.31 to 3.34, which lack
    # UPDATE … RETURNING: there every claim failed, retried for ever, with no check to say so.
    monkeypatch.setattr(connection.Database, "sqlite_version_info", (3, 34, 1))
    monkeypatch.setattr(outbox, "_checked_aliases", set())  # an earlier test's publish
    [error] = [m for m in checks.check_databases() if m.id == "django_ensign.E014"]
    assert "is SQLite 3.34.1, and django_ensign needs SQLite 3.35 or newer" in error.msg
    with pytest.raises(exceptions.UnsupportedDatabase, match=r"SQLite 3\.34\.1"):
        outbox.publish("orders", {"n": 1})

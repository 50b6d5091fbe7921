"""System checks with stable ids (``django_ensign.E001`` and on); a test covers each id."""

from __future__ import annotations

# Ids E001-E019 and W001-W019: connection and outbox; E020-E039 and W020-W039: subscriber.
# === outbox and connection checks ===========================================
import math as _math
import os as _os
from pathlib import Path as _Path
from typing import Any as _Any

from django.core import checks as _checks

from django_ensign.conf import settings as _settings

#: PostgreSQL's NAMEDATALEN: identifiers, channel names included, are shorter.
_PG_NAME_BYTES = 64
#: The longest lease, poll or backoff in seconds E008 accepts.
_MAX_WAIT = 100 * 365 * 24 * 3600
#: The options of a publication stored in a sized outbox column: (column, option).
_FITTED_OPTIONS = (
    ("type_name", "on_create"),
    ("type_name", "on_update"),
    ("type_name", "on_delete"),
    ("type_version", "version"),
    ("mimetype", "mimetype"),
)
_PUBLICATION_OPTIONS = frozenset(
    {"topic", "on_create", "on_update", "on_delete", "version", "serializer", "key", "mimetype"}
)


@_checks.register("django_ensign")
def check_connection(app_configs: _Any = None, **kwargs: _Any) -> list[_checks.CheckMessage]:
    """E001 endpoint, E002 credentials, E003/W002 credentials file, E006 auth URL, W001 TLS."""
    from django_ensign.client import config, exceptions

    found: list[_checks.CheckMessage] = []
    host = ""
    try:
        host, _ = config.split_endpoint(_settings.ENDPOINT)
    except exceptions.ConfigurationError as err:
        found.append(
            _checks.Error(
                f"ENSIGN_ENDPOINT is invalid: {err}",
                hint="Use host:port, e.g. 127.0.0.1:5356 or ensign.example.com:443.",
                id="django_ensign.E001",
            )
        )
    cred_file = _settings.CREDENTIALS_FILE
    if bool(_settings.CLIENT_ID) != bool(_settings.CLIENT_SECRET):
        # The client would take the other half from the credentials file (or nowhere),
        # a pair the auth service refuses.
        given, lacking = (
            ("ENSIGN_CLIENT_ID", "ENSIGN_CLIENT_SECRET")
            if _settings.CLIENT_ID
            else ("ENSIGN_CLIENT_SECRET", "ENSIGN_CLIENT_ID")
        )
        found.append(
            _checks.Error(
                f"{given} is set but {lacking} is not.",
                hint="Set both (settings or environment), or neither to use "
                "ENSIGN_CREDENTIALS_FILE.",
                id="django_ensign.E002",
            )
        )
    elif cred_file and not (_settings.CLIENT_ID and _settings.CLIENT_SECRET):
        if not _Path(cred_file).exists():
            # Not an error: `manage.py ensign_server` writes it on its first start.
            found.append(
                _checks.Warning(
                    f"ENSIGN_CREDENTIALS_FILE {cred_file} does not exist yet.",
                    hint="Start the embedded server once (manage.py ensign_server), or download "
                    "the credentials of your Ensign project to that path.",
                    id="django_ensign.W002",
                )
            )
        else:
            found.extend(_credentials_file_errors(cred_file))
    elif not (_settings.CLIENT_ID and _settings.CLIENT_SECRET):
        found.append(
            _checks.Error(
                "Ensign credentials are missing.",
                hint="Set ENSIGN_CLIENT_ID and ENSIGN_CLIENT_SECRET (settings or environment), "
                "or ENSIGN_CREDENTIALS_FILE.",
                id="django_ensign.E002",
            )
        )
    if not _settings.AUTH_URL.startswith(("http://", "https://")):
        found.append(
            _checks.Error(
                f"ENSIGN_AUTH_URL must be an http(s) URL, got {_settings.AUTH_URL!r}.",
                id="django_ensign.E006",
            )
        )
    if host and _settings.INSECURE and not config.is_loopback(host):
        found.append(
            _checks.Warning(
                f"ENSIGN_INSECURE sends credentials in plain text to {host}, not a loopback host.",
                hint="Use TLS for any server off this machine.",
                id="django_ensign.W001",
            )
        )
    return found


def _credentials_file_errors(cred_file: str) -> list[_checks.CheckMessage]:
    from django_ensign.client import config, exceptions

    try:
        file_id, file_secret = config.load_credentials_file(cred_file)
    except exceptions.ConfigurationError as err:
        return [
            _checks.Error(
                f"ENSIGN_CREDENTIALS_FILE cannot be used: {err}",
                hint="Point it at the JSON file with ClientID and ClientSecret.",
                id="django_ensign.E003",
            )
        ]
    if not (file_id and file_secret):
        return [
            _checks.Error(
                f"ENSIGN_CREDENTIALS_FILE {cred_file} lacks ClientID or ClientSecret.",
                id="django_ensign.E003",
            )
        ]
    return []


@_checks.register("django_ensign")
def check_outbox(app_configs: _Any = None, **kwargs: _Any) -> list[_checks.CheckMessage]:
    """E004 topic names, E005 unknown models, E007 malformed entries, E008 relay settings,
    E009 a publication's mimetype or version, E011 a model registered in code and settings,
    E012 a serializer or key that is not a function, W005 a published through model."""
    from django.apps import apps

    from django_ensign import outbox, registry
    from django_ensign.client.exceptions import EnsignError, InvalidTopicName

    found: list[_checks.CheckMessage] = []
    published = _settings.PUBLISHED_MODELS
    if not _settings.published_models_is_mapping():
        found.append(
            _checks.Error(
                "ENSIGN_PUBLISHED_MODELS must be a dict of 'app_label.Model' to options; "
                "no model publishes from it.",
                hint='For example {"shop.Order": {"topic": "orders"}}.',
                id="django_ensign.E007",
            )
        )
    unknown = set(registry.unknown_setting_models())
    for label, options in published.items():
        if label in unknown:
            found.append(
                _checks.Error(
                    f"ENSIGN_PUBLISHED_MODELS names {label!r}, which is not an installed model.",
                    hint="Use app_label.ModelName of a model in INSTALLED_APPS.",
                    id="django_ensign.E005",
                )
            )
        if not isinstance(options, dict) or "topic" not in options:
            found.append(
                _checks.Error(
                    f"ENSIGN_PUBLISHED_MODELS[{label!r}] must be a dict with a 'topic'.",
                    id="django_ensign.E007",
                )
            )
            continue
        in_code = None if label in unknown else registry.registered_in_code(apps.get_model(label))
        if in_code is not None:
            found.append(
                _checks.Error(
                    f"ENSIGN_PUBLISHED_MODELS names {label!r}, which already publishes to "
                    f"{in_code.topic!r} through @publishes or register(); the setting is ignored.",
                    hint="Keep one of the two.",
                    id="django_ensign.E011",
                )
            )
        extra = set(options) - _PUBLICATION_OPTIONS
        if extra:
            found.append(
                _checks.Error(
                    f"ENSIGN_PUBLISHED_MODELS[{label!r}] has unknown options {sorted(extra)}.",
                    hint=f"Known options: {sorted(_PUBLICATION_OPTIONS)}.",
                    id="django_ensign.E007",
                )
            )
        for name in registry.FUNCTION_OPTIONS:
            try:
                registry.setting_function(options.get(name))
            except (ImportError, TypeError) as err:
                found.append(
                    _checks.Error(
                        f"ENSIGN_PUBLISHED_MODELS[{label!r}][{name!r}] is not a function: {err}",
                        hint="Give a callable, or the dotted path of one "
                        "(e.g. 'shop.events.order_payload').",
                        id="django_ensign.E012",
                    )
                )
        try:
            outbox.validate_format(options.get("mimetype"), options.get("version", "1.0.0"))
            for column, option in _FITTED_OPTIONS:
                if isinstance(options.get(option), str):
                    outbox.validate_fits(**{column: options[option]})
        except EnsignError as err:
            found.append(
                _checks.Error(f"ENSIGN_PUBLISHED_MODELS[{label!r}]: {err}", id="django_ensign.E009")
            )
    topics: dict[str, str] = {}
    for label, o in published.items():
        if not isinstance(o, dict) or "topic" not in o:
            continue
        if isinstance(o["topic"], str):
            topics[o["topic"]] = label
        else:
            found.append(
                _checks.Error(
                    f"{label}: a topic name is a string, got {o['topic']!r}.",
                    id="django_ensign.E004",
                )
            )
    publications = registry.publications()
    found.extend(_through_model_warnings({p.model for p in publications}))
    topics.update({p.topic: p.model._meta.label for p in publications})
    for topic, label in sorted(topics.items()):
        try:
            outbox.validate_topic(topic)
        except InvalidTopicName as err:
            found.append(_checks.Error(f"{label}: {err}", id="django_ensign.E004"))
    for name, zero_allowed, seconds in (
        ("ENSIGN_OUTBOX_BATCH_SIZE", False, False),
        ("ENSIGN_OUTBOX_MAX_IN_FLIGHT", False, False),
        ("ENSIGN_OUTBOX_MAX_ATTEMPTS", False, False),
        ("ENSIGN_OUTBOX_LEASE_SECONDS", False, True),
        ("ENSIGN_OUTBOX_POLL_SECONDS", False, True),
        # A zero backoff retries at once: a choice, where a negative one is a mistake.
        ("ENSIGN_OUTBOX_BACKOFF_BASE", True, True),
        ("ENSIGN_OUTBOX_BACKOFF_MAX", True, True),
    ):
        try:
            value = getattr(_settings, name.removeprefix("ENSIGN_"))
        except (TypeError, ValueError, OverflowError) as err:  # int(inf) overflows
            found.append(
                _checks.Error(f"{name} must be a finite number ({err}).", id="django_ensign.E008")
            )
            continue
        if not _math.isfinite(value):
            found.append(
                _checks.Error(
                    f"{name} must be a finite number, got {value}.", id="django_ensign.E008"
                )
            )
        elif value < 0 or (value == 0 and not zero_allowed) or (seconds and value > _MAX_WAIT):
            if value > 0:
                # Leases and retry times are the database's clock plus these, and nobody
                # means a wait this long: it is a typo, or a unit mistaken.
                rule = f"must be at most {_MAX_WAIT:,} seconds (a hundred years)"
            else:
                rule = "must not be negative" if zero_allowed else "must be positive"
            found.append(_checks.Error(f"{name} {rule}, got {value}.", id="django_ensign.E008"))
    if _settings.OUTBOX_CELERY_ON_COMMIT and not _importable("celery"):
        # Each commit's hook would fail to queue its drain, logging an ImportError.
        found.append(
            _checks.Error(
                "ENSIGN_OUTBOX_CELERY_ON_COMMIT is on, but Celery is not installed.",
                hint="pip install 'django-ensign[celery]', or turn the setting off.",
                id="django_ensign.E013",
            )
        )
    if _uses_postgresql() and not _importable("psycopg"):
        found.append(
            _checks.Warning(
                "The relay and the Celery drain need psycopg 3 on PostgreSQL (psycopg2 is "
                "enough for writing outbox rows).",
                hint="pip install 'django-ensign[postgres]' where the relay runs.",
                id="django_ensign.W004",
            )
        )
    lock_dir = _settings.OUTBOX_LOCK_FILE_DIR
    if (
        lock_dir
        and not (_os.path.isdir(lock_dir) and _os.access(lock_dir, _os.W_OK | _os.X_OK))
        and _uses_lock_files()
    ):
        # Each drain and relay on a database without advisory locks creates its lock there.
        found.append(
            _checks.Error(
                f"ENSIGN_OUTBOX_LOCK_FILE_DIR {lock_dir!r} is not a directory this process "
                "can create files in.",
                id="django_ensign.E008",
            )
        )
    channel = _settings.OUTBOX_NOTIFY_CHANNEL
    if (
        _settings.OUTBOX_NOTIFY
        and (not 0 < len(channel.encode()) < _PG_NAME_BYTES or "\x00" in channel)
        and _uses_postgresql()
    ):
        # pg_notify() refuses such a name, and LISTEN would cut a long one short: either
        # every write that publishes fails, or the relay waits for a channel nobody uses.
        found.append(
            _checks.Error(
                f"ENSIGN_OUTBOX_NOTIFY_CHANNEL must be 1 to {_PG_NAME_BYTES - 1} bytes "
                f"with no NUL character, got {channel!r}.",
                id="django_ensign.E010",
            )
        )
    return found


def _through_model_warnings(published: set[type[_Any]]) -> list[_checks.CheckMessage]:
    from django.apps import apps

    found: list[_checks.CheckMessage] = []
    for model in apps.get_models():
        for relation in model._meta.local_many_to_many:
            through = relation.remote_field.through
            if through in published:
                found.append(
                    _checks.Warning(
                        f"{through._meta.label} publishes and is the through model of "
                        f"{model._meta.label}.{relation.name}, whose add() and set() insert "
                        "its rows with bulk_create: no event for them, while remove() and "
                        "clear() publish their deletions.",
                        hint=f"Create {through._meta.object_name} rows one by one "
                        "(objects.create()), or publish them with outbox.publish() in the "
                        "same transaction.",
                        obj=through,
                        id="django_ensign.W005",
                    )
                )
    return found


#: The tag of the checks ``ensign_server`` runs before it starts (it skips the others).
SERVER_TAG = "django_ensign_server"


@_checks.register("django_ensign", SERVER_TAG)
def check_server(app_configs: _Any = None, **kwargs: _Any) -> list[_checks.CheckMessage]:
    """E015 the embedded server's ports."""
    from django.conf import settings as django_settings

    found: list[_checks.CheckMessage] = []
    for name in ("SERVER_PORT", "SERVER_AUTH_PORT"):
        try:
            port = getattr(_settings, name)
        except (TypeError, ValueError):
            port = None
        if port is None or not 1 <= port <= 65535:
            raw = getattr(django_settings, f"ENSIGN_{name}", None)
            found.append(
                _checks.Error(
                    f"ENSIGN_{name} must be a port number from 1 to 65535, got {raw!r}.",
                    id="django_ensign.E015",
                )
            )
    return found


@_checks.register("django_ensign")
def check_databases(app_configs: _Any = None, **kwargs: _Any) -> list[_checks.CheckMessage]:
    """E014 published models or handlers write to a database other than PostgreSQL or SQLite."""
    from django.db import router

    from django_ensign import databases, registry
    from django_ensign.dispatch import inbox_alias
    from django_ensign.handlers import registry as handlers

    writers: dict[str, list[str]] = {}
    for publication in registry.publications():
        alias = router.db_for_write(publication.model)
        writers.setdefault(alias, []).append(publication.model._meta.label)
    if handlers.all():
        writers.setdefault(inbox_alias(), []).append("the handlers (their inbox)")
    found: list[_checks.CheckMessage] = []
    for alias, writer in writers.items():
        reason = None if _connection(alias) is None else databases.unsupported(alias)
        if reason is not None:
            found.append(
                _checks.Error(
                    f"{reason}; used by: {', '.join(writer)}.",
                    hint="Route these models and django_ensign's tables to a PostgreSQL or "
                    "SQLite database (DATABASE_ROUTERS): an outbox row joins its model's own "
                    "transaction, and an inbox row its handler's.",
                    id="django_ensign.E014",
                )
            )
    return found


@_checks.register("django_ensign")
def check_prepared_insert(app_configs: _Any = None, **kwargs: _Any) -> list[_checks.CheckMessage]:
    """W003 a database asks for the prepared outbox INSERT where it cannot take effect."""
    from django.db import connections

    from django_ensign.db import prepared

    found: list[_checks.CheckMessage] = []
    for alias in connections:
        if not connections.settings[alias].get(prepared.SETTING):
            continue
        connection = _connection(alias)
        reason = None if connection is None else prepared.refusal(connection)
        if reason is None:
            continue
        found.append(
            _checks.Warning(
                f"DATABASES[{alias!r}] sets {prepared.SETTING}, which has no effect there: "
                f"{reason}.",
                id="django_ensign.W003",
            )
        )
    return found


def _importable(module: str) -> bool:
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def _uses_postgresql() -> bool:
    """Whether any configured database is PostgreSQL, the only one that notifies."""
    return "postgresql" in _vendors()


def _uses_lock_files() -> bool:
    """Whether any configured database is not PostgreSQL (its drain lock is a file)."""
    return bool(_vendors() - {"postgresql"})


def _vendors() -> set[str]:
    from django.db import connections

    return {c.vendor for c in map(_connection, connections) if c is not None}


def _connection(alias: str) -> _Any:
    """The alias's connection wrapper; None when it is not configured (a router's typo,
    Django's to report on use) or its backend cannot be loaded here.

    ``check`` reports on the project, not on each alias's driver: an alias whose driver
    this environment lacks (a reporting database, say) is Django's to complain about when
    used, and must not turn these checks into a traceback.
    """
    from django.core.exceptions import ImproperlyConfigured
    from django.db import connections
    from django.utils.connection import ConnectionDoesNotExist

    try:
        return connections[alias]
    except (ImproperlyConfigured, ImportError, ConnectionDoesNotExist):
        return None


# === end outbox and connection checks =======================================

# === subscriber checks ======================================================
# Imports sit in each owner's section of this shared file.
import math as _sub_math  # noqa: E402
from typing import Any as _SubAny  # noqa: E402

from django.conf import settings as _django_settings  # noqa: E402
from django.core import checks as _sub_checks  # noqa: E402

from django_ensign.conf import settings as _sub_settings  # noqa: E402
from django_ensign.wire import topicnames as _topicnames  # noqa: E402

#: The embedded server's default delivery timeout (PROTOCOL.md §4).
_DELIVERY_TIMEOUT = 30.0


@_sub_checks.register("django_ensign")
def check_handlers(
    app_configs: _SubAny = None, **kwargs: _SubAny
) -> list[_sub_checks.CheckMessage]:
    """E020 a handler's topic is not a valid Ensign topic name."""
    from django_ensign.handlers import registry

    return [
        _sub_checks.Error(
            f"Handler {entry.name} is registered for {entry.topic!r}, which is not a topic name.",
            hint="Topic names start with a letter and use letters, digits, '.', '-' and '_'.",
            obj=entry.name,
            id="django_ensign.E020",
        )
        for entry in registry.all()
        if not _topicnames.is_valid(entry.topic)
    ]


#: The subscriber's numeric settings and the id that reports each.
_SUBSCRIBER_NUMBERS = {
    "CONCURRENCY": "django_ensign.E021",
    "MAX_ATTEMPTS": "django_ensign.E022",
    "BACKOFF_BASE": "django_ensign.E023",
    "BACKOFF_MAX": "django_ensign.E023",
    "RECONNECT_MAX": "django_ensign.E023",
    "WINDOW": "django_ensign.E024",
    "BATCH_SIZE": "django_ensign.E024",
}


@_sub_checks.register("django_ensign")
def check_subscriber_settings(
    app_configs: _SubAny = None, **kwargs: _SubAny
) -> list[_sub_checks.CheckMessage]:
    """E021 concurrency, E022 attempts, E023 backoff and reconnect waits, E024 window and
    batch size; W020 retries outlast the delivery timeout."""
    found: list[_sub_checks.CheckMessage] = []
    values: dict[str, _SubAny] = {}
    for name, check_id in _SUBSCRIBER_NUMBERS.items():
        try:
            values[name] = getattr(_sub_settings, f"SUBSCRIBER_{name}")
        except (TypeError, ValueError, OverflowError) as err:  # int(inf) overflows
            found.append(
                _sub_checks.Error(
                    f"ENSIGN_SUBSCRIBER_{name} must be a finite number ({err}).", id=check_id
                )
            )
    if found:
        return found
    concurrency, attempts = values["CONCURRENCY"], values["MAX_ATTEMPTS"]
    window, batch_size = values["WINDOW"], values["BATCH_SIZE"]
    base, cap = values["BACKOFF_BASE"], values["BACKOFF_MAX"]
    reconnect = values["RECONNECT_MAX"]
    if concurrency < 1:
        found.append(
            _sub_checks.Error(
                "ENSIGN_SUBSCRIBER_CONCURRENCY must be at least 1.", id="django_ensign.E021"
            )
        )
    for name, value in (("WINDOW", window), ("BATCH_SIZE", batch_size)):
        if value is not None and value < 0:
            found.append(
                _sub_checks.Error(
                    f"ENSIGN_SUBSCRIBER_{name} must not be negative, got {value}.",
                    hint="0 leaves it to the server; None (the default) lets django-ensign pick.",
                    id="django_ensign.E024",
                )
            )
    if attempts < 1:
        found.append(
            _sub_checks.Error(
                "ENSIGN_SUBSCRIBER_MAX_ATTEMPTS must be at least 1.", id="django_ensign.E022"
            )
        )
    backoff_ok = _sub_math.isfinite(base) and _sub_math.isfinite(cap) and base >= 0 and cap >= 0
    if not backoff_ok:
        found.append(
            _sub_checks.Error(
                "ENSIGN_SUBSCRIBER_BACKOFF_BASE and ENSIGN_SUBSCRIBER_BACKOFF_MAX must be finite "
                "and not negative.",
                id="django_ensign.E023",
            )
        )
    if not _sub_math.isfinite(reconnect) or reconnect <= 0:
        found.append(
            _sub_checks.Error(
                "ENSIGN_SUBSCRIBER_RECONNECT_MAX must be positive: without a wait the "
                "subscriber would reconnect to an unreachable server in a busy loop.",
                id="django_ensign.E023",
            )
        )
    if backoff_ok and attempts > 1:
        worst = sum(min(cap, base * 2 ** (n - 1)) for n in range(1, attempts))
        if worst > _DELIVERY_TIMEOUT:
            found.append(
                _sub_checks.Warning(
                    f"A failing event may be held for {worst:.0f}s of retries, longer than the "
                    f"server's {_DELIVERY_TIMEOUT:.0f}s delivery timeout: it would be delivered "
                    "again meanwhile.",
                    hint="Lower ENSIGN_SUBSCRIBER_MAX_ATTEMPTS or ENSIGN_SUBSCRIBER_BACKOFF_MAX.",
                    id="django_ensign.W020",
                )
            )
    return found


@_sub_checks.register("django_ensign")
def check_celery_confirms(
    app_configs: _SubAny = None, **kwargs: _SubAny
) -> list[_sub_checks.CheckMessage]:
    """W021 a RabbitMQ broker without publisher confirms (``--celery`` could ack too early)."""
    url = str(getattr(_django_settings, "CELERY_BROKER_URL", "") or "")
    options = getattr(_django_settings, "CELERY_BROKER_TRANSPORT_OPTIONS", None) or {}
    if url.startswith(("amqp://", "amqps://", "pyamqp://")) and not options.get("confirm_publish"):
        return [
            _sub_checks.Warning(
                "The Celery broker is AMQP without publisher confirms: `ensign_subscribe --celery` "
                "acks an event once the task is sent, which is not yet durable.",
                hint='Set CELERY_BROKER_TRANSPORT_OPTIONS = {"confirm_publish": True}.',
                id="django_ensign.W021",
            )
        ]
    return []


# === end subscriber checks ==================================================

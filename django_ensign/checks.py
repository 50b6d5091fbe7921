"""System checks with stable ids (``django_ensign.E001`` …); a test covers each id."""

from __future__ import annotations

# Ids E001–E019 and W001–W019: connection and outbox; E020–E039 and W020–W039: subscriber.

# === outbox and connection checks ===========================================
from typing import Any as _Any

from django.core import checks as _checks

from django_ensign.conf import settings as _settings

_PUBLICATION_OPTIONS = frozenset(
    {"topic", "on_create", "on_update", "on_delete", "version", "serializer", "key", "mimetype"}
)


@_checks.register("django_ensign")
def check_connection(app_configs: _Any = None, **kwargs: _Any) -> list[_checks.CheckMessage]:
    """E001 endpoint, E002 credentials, E003 credentials file, E006 auth URL, W001 plain text."""
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
    if cred_file and not (_settings.CLIENT_ID and _settings.CLIENT_SECRET):
        try:
            file_id, file_secret = config.load_credentials_file(cred_file)
        except exceptions.ConfigurationError as err:
            found.append(
                _checks.Error(
                    f"ENSIGN_CREDENTIALS_FILE cannot be used: {err}",
                    hint="Point it at the JSON file with ClientID and ClientSecret.",
                    id="django_ensign.E003",
                )
            )
        else:
            if not (file_id and file_secret):
                found.append(
                    _checks.Error(
                        f"ENSIGN_CREDENTIALS_FILE {cred_file} lacks ClientID or ClientSecret.",
                        id="django_ensign.E003",
                    )
                )
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
                f"ENSIGN_INSECURE sends credentials in plain text to {host}, which is not loopback.",
                hint="Use TLS for any server off this machine.",
                id="django_ensign.W001",
            )
        )
    return found


@_checks.register("django_ensign")
def check_outbox(app_configs: _Any = None, **kwargs: _Any) -> list[_checks.CheckMessage]:
    """E004 topic names, E005 unknown models, E007 malformed entries, E008 relay settings."""
    from django_ensign import outbox, registry
    from django_ensign.client.exceptions import InvalidTopicName

    found: list[_checks.CheckMessage] = []
    published = _settings.PUBLISHED_MODELS
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
        extra = set(options) - _PUBLICATION_OPTIONS
        if extra:
            found.append(
                _checks.Error(
                    f"ENSIGN_PUBLISHED_MODELS[{label!r}] has unknown options {sorted(extra)}.",
                    hint=f"Known options: {sorted(_PUBLICATION_OPTIONS)}.",
                    id="django_ensign.E007",
                )
            )
    topics = {str(o["topic"]): label for label, o in published.items() if isinstance(o, dict) and "topic" in o}
    topics.update({p.topic: p.model._meta.label for p in registry.publications()})
    for topic, label in sorted(topics.items()):
        try:
            outbox.validate_topic(topic)
        except InvalidTopicName as err:
            found.append(_checks.Error(f"{label}: {err}", id="django_ensign.E004"))
    numbers = {
        "ENSIGN_OUTBOX_BATCH_SIZE": _settings.OUTBOX_BATCH_SIZE,
        "ENSIGN_OUTBOX_MAX_IN_FLIGHT": _settings.OUTBOX_MAX_IN_FLIGHT,
        "ENSIGN_OUTBOX_MAX_ATTEMPTS": _settings.OUTBOX_MAX_ATTEMPTS,
        "ENSIGN_OUTBOX_LEASE_SECONDS": _settings.OUTBOX_LEASE_SECONDS,
        "ENSIGN_OUTBOX_POLL_SECONDS": _settings.OUTBOX_POLL_SECONDS,
    }
    for name, value in numbers.items():
        if value <= 0:
            found.append(
                _checks.Error(f"{name} must be positive, got {value}.", id="django_ensign.E008")
            )
    return found


# === end outbox and connection checks =======================================

# === subscriber checks ======================================================
# === end subscriber checks ==================================================

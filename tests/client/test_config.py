"""Where credentials, endpoint and TLS come from (no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from django_ensign.client import Ensign, MissingCredentials, exceptions
from django_ensign.client.config import resolve

ENV = {"ENSIGN_CLIENT_ID": "env-id", "ENSIGN_CLIENT_SECRET": "env-secret"}


def test_arguments_win_over_the_environment() -> None:
    config = resolve(client_id="arg-id", client_secret="arg-secret", environ=ENV)
    assert (config.client_id, config.client_secret) == ("arg-id", "arg-secret")


def test_environment_supplies_everything() -> None:
    config = resolve(
        environ={
            **ENV,
            "ENSIGN_ENDPOINT": "ensign.example.com:5356",
            "ENSIGN_INSECURE": "true",
            "ENSIGN_AUTH_URL": "http://auth.example.com/",
        }
    )
    assert config.client_id == "env-id"
    assert config.endpoint == "ensign.example.com:5356"
    assert config.insecure is True
    assert config.auth_url == "http://auth.example.com"


def test_credentials_file_in_the_ensign_ui_format(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    path.write_text(json.dumps({"ClientID": "file-id", "ClientSecret": "file-secret"}))
    config = resolve(cred_path=path, environ={})
    assert (config.client_id, config.client_secret) == ("file-id", "file-secret")


def test_missing_credentials_name_the_environment_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ENSIGN_CLIENT_ID", raising=False)
    monkeypatch.delenv("ENSIGN_CLIENT_SECRET", raising=False)
    with pytest.raises(MissingCredentials, match="ENSIGN_CLIENT_ID and ENSIGN_CLIENT_SECRET"):
        Ensign()
    with pytest.raises(MissingCredentials, match="set ENSIGN_CLIENT_SECRET"):
        Ensign(client_id="only-id")


def test_missing_credentials_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(exceptions.ConfigurationError, match="not found"):
        resolve(cred_path=tmp_path / "nope.json", environ=ENV)


def test_explicit_credentials_need_no_credentials_file(tmp_path: Path) -> None:
    # A project's settings may name the embedded server's file before it exists.
    config = resolve(
        client_id="arg-id", client_secret="arg-secret", cred_path=tmp_path / "later.json"
    )
    assert (config.client_id, config.client_secret) == ("arg-id", "arg-secret")


def test_tls_by_default_except_on_loopback() -> None:
    assert resolve(environ=ENV).insecure is False
    assert resolve(endpoint="ensign.example.com:443", environ=ENV).insecure is False
    assert resolve(endpoint="127.0.0.1:5356", environ=ENV).insecure is True
    assert resolve(endpoint="localhost:5356", environ=ENV).insecure is True
    assert resolve(endpoint="[::1]:5356", environ=ENV).insecure is True
    assert resolve(endpoint="127.0.0.1:5356", insecure=False, environ=ENV).insecure is False


def test_hosted_service_defaults() -> None:
    config = resolve(environ=ENV)
    assert config.endpoint == "ensign.rotational.app:443"
    assert config.auth_url == "https://auth.rotational.app"


@pytest.mark.parametrize("endpoint", ["nohost", ":5356", "host:", "host:99999", "host:abc"])
def test_malformed_endpoint(endpoint: str) -> None:
    with pytest.raises(exceptions.ConfigurationError, match="host:port"):
        resolve(endpoint=endpoint, environ=ENV)


def test_bad_insecure_value() -> None:
    with pytest.raises(exceptions.ConfigurationError, match="ENSIGN_INSECURE"):
        resolve(environ={**ENV, "ENSIGN_INSECURE": "maybe"})

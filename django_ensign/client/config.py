"""Where the client's credentials and endpoint come from: arguments, a JSON file, or env vars."""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from django_ensign.client import exceptions

DEFAULT_ENDPOINT = "ensign.rotational.app:443"
DEFAULT_AUTH_URL = "https://auth.rotational.app"
ENV_CLIENT_ID = "ENSIGN_CLIENT_ID"
ENV_CLIENT_SECRET = "ENSIGN_CLIENT_SECRET"
ENV_ENDPOINT = "ENSIGN_ENDPOINT"
ENV_INSECURE = "ENSIGN_INSECURE"
ENV_AUTH_URL = "ENSIGN_AUTH_URL"

_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off", ""})


@dataclass(frozen=True)
class ClientConfig:
    """Resolved connection settings of one client."""

    client_id: str
    client_secret: str = field(repr=False)
    endpoint: str
    insecure: bool
    auth_url: str

    @property
    def host(self) -> str:
        """The endpoint's host without brackets."""
        return split_endpoint(self.endpoint)[0]


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """``"host:port"`` (or ``"[::1]:port"``) → ``(host, port)``; ConfigurationError if malformed."""
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in host:
        # "/" in the host: a URL ("http://host:port"), which gRPC cannot dial.
        raise exceptions.ConfigurationError(
            f"endpoint must be host:port with no scheme, got {endpoint!r}"
        )
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine (plain text is fine there)."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_bool(value: str, name: str) -> bool:
    """Parse a boolean environment variable."""
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise exceptions.ConfigurationError(f"{name} must be true or false, got {value!r}")


def load_credentials_file(path: str | os.PathLike[str]) -> tuple[str, str]:
    """Read ``ClientID`` and ``ClientSecret`` from a credentials JSON file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise exceptions.ConfigurationError(f"credentials file {path} not found") from None
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise exceptions.ConfigurationError(f"cannot read credentials file {path}: {err}") from err
    if not isinstance(data, dict):
        raise exceptions.ConfigurationError(f"credentials file {path} is not a JSON object")
    client_id = data.get("ClientID") or data.get("client_id") or ""
    client_secret = data.get("ClientSecret") or data.get("client_secret") or ""
    if not isinstance(client_id, str) or not isinstance(client_secret, str):
        raise exceptions.ConfigurationError(f"credentials file {path} has non-string values")
    return client_id, client_secret


def resolve(
    *,
    client_id: str = "",
    client_secret: str = "",
    cred_path: str | os.PathLike[str] = "",
    endpoint: str | None = None,
    insecure: bool | None = None,
    auth_url: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> ClientConfig:
    """Settle the client's settings: arguments first, then the file, then the environment.

    ``insecure=None`` means TLS unless ``ENSIGN_INSECURE`` says otherwise or the endpoint
    is a loopback address.
    """
    env = os.environ if environ is None else environ
    if cred_path and not (client_id and client_secret):
        file_id, file_secret = load_credentials_file(cred_path)
        client_id = client_id or file_id
        client_secret = client_secret or file_secret
    client_id = client_id or env.get(ENV_CLIENT_ID, "")
    client_secret = client_secret or env.get(ENV_CLIENT_SECRET, "")
    if not isinstance(client_id, str) or not isinstance(client_secret, str):
        raise exceptions.ConfigurationError("client_id and client_secret must be strings")
    missing = [
        env_name
        for value, env_name in ((client_id, ENV_CLIENT_ID), (client_secret, ENV_CLIENT_SECRET))
        if not value
    ]
    if missing:
        names = " and ".join(missing)
        raise exceptions.MissingCredentials(
            f"missing Ensign credentials: pass client_id and client_secret, use cred_path, "
            f"or set {names}"
        )
    endpoint = endpoint or env.get(ENV_ENDPOINT, "") or DEFAULT_ENDPOINT
    host, _ = split_endpoint(endpoint)
    if insecure is None:
        raw = env.get(ENV_INSECURE)
        insecure = parse_bool(raw, ENV_INSECURE) if raw else is_loopback(host)
    auth_url = (auth_url or env.get(ENV_AUTH_URL, "") or DEFAULT_AUTH_URL).rstrip("/")
    if not auth_url.startswith(("http://", "https://")):
        raise exceptions.ConfigurationError(f"auth_url must be an http(s) URL, got {auth_url!r}")
    return ClientConfig(
        client_id=client_id,
        client_secret=client_secret,
        endpoint=endpoint,
        insecure=bool(insecure),
        auth_url=auth_url,
    )

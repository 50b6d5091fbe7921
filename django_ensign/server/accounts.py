"""Projects and API keys: creation, and secret verification with hashed storage."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import string
import time
from dataclasses import dataclass

from django_ensign.wire import ids

_ITERATIONS = 20_000
_LETTERS = string.ascii_letters
_ALNUM = string.ascii_letters + string.digits


@dataclass(frozen=True)
class ApiKey:
    """A verified API key."""

    client_id: str
    project_id: bytes
    permissions: list[str]


def hash_secret(secret: str, salt: bytes | None = None) -> str:
    """``pbkdf2_sha256$iterations$salt$hash`` of a client secret."""
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, _ITERATIONS)
    return f"pbkdf2_sha256${_ITERATIONS}${salt.hex()}${digest.hex()}"


def check_secret(secret: str, stored: str) -> bool:
    """Whether ``secret`` matches a stored hash."""
    try:
        _, iterations, salt, expected = stored.split("$")
        digest = hashlib.pbkdf2_hmac(
            "sha256", secret.encode(), bytes.fromhex(salt), int(iterations)
        )
    except ValueError:
        return False
    return hmac.compare_digest(digest.hex(), expected)


def default_project(conn: sqlite3.Connection) -> bytes:
    """The first project, created if the database has none."""
    row = conn.execute("SELECT id FROM projects ORDER BY created LIMIT 1").fetchone()
    if row:
        return bytes(row[0])
    project_id = ids.new_ulid()
    conn.execute("INSERT INTO projects (id, created) VALUES (?, ?)", (project_id, time.time_ns()))
    return project_id


def create_apikey(
    conn: sqlite3.Connection, project_id: bytes, permissions: list[str]
) -> tuple[str, str]:
    """Store a new key for ``project_id``; returns (client id, secret) — the only time the
    secret exists in clear."""
    client_id = "".join(secrets.choice(_LETTERS) for _ in range(32))
    secret = "".join(secrets.choice(_ALNUM) for _ in range(64))
    conn.execute(
        "INSERT INTO apikeys (client_id, project_id, secret_hash, permissions, created)"
        " VALUES (?, ?, ?, ?, ?)",
        (client_id, project_id, hash_secret(secret), json.dumps(permissions), time.time_ns()),
    )
    return client_id, secret


class KeyVerifier:
    """Checks client credentials, remembering successful checks so logins stay cheap."""

    def __init__(self) -> None:
        self._verified: dict[str, tuple[bytes, ApiKey]] = {}

    def verify(self, conn: sqlite3.Connection, client_id: str, secret: str) -> ApiKey | None:
        """The key if the credentials are valid, else None."""
        fingerprint = hashlib.sha256(secret.encode()).digest()
        hit = self._verified.get(client_id)
        if hit is not None and hmac.compare_digest(hit[0], fingerprint):
            return hit[1]
        row = conn.execute(
            "SELECT project_id, secret_hash, permissions FROM apikeys WHERE client_id = ?",
            (client_id,),
        ).fetchone()
        if row is None or not check_secret(secret, row[1]):
            return None
        key = ApiKey(client_id, bytes(row[0]), list(json.loads(row[2])))
        self._verified[client_id] = (fingerprint, key)
        return key

    def lookup(self, conn: sqlite3.Connection, client_id: str) -> ApiKey | None:
        """The key with this client id (for refresh), or None if it was removed."""
        row = conn.execute(
            "SELECT project_id, permissions FROM apikeys WHERE client_id = ?", (client_id,)
        ).fetchone()
        if row is None:
            return None
        return ApiKey(client_id, bytes(row[0]), list(json.loads(row[1])))

"""RS256 access and refresh tokens signed with a key pair kept in the data directory."""

from __future__ import annotations

import base64
import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from django_ensign.wire import ids

ISSUER = "https://auth.rotational.app"
AUDIENCE = "https://ensign.rotational.app"
REFRESH_AUDIENCE = "https://auth.rotational.app/v1/refresh"
ACCESS_LIFETIME = 3600
REFRESH_NOT_BEFORE = 45 * 60
REFRESH_LIFETIME = 2 * 3600
_CACHE_SECONDS = 30.0
_CACHE_MAX = 4096

#: Every permission of PROTOCOL.md §2.
ALL_PERMISSIONS = (
    "publisher",
    "subscriber",
    "topics:create",
    "topics:edit",
    "topics:destroy",
    "topics:read",
    "metrics:read",
)


class InvalidToken(Exception):
    """The token does not verify."""


@dataclass(frozen=True)
class Claims:
    """What a verified access token says about its bearer."""

    project_id: bytes
    permissions: frozenset[str]
    subject: str
    expires: float


def _b64(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


class TokenIssuer:
    """Signs and verifies tokens; caches verified access tokens briefly."""

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        self._key = key
        self._public = key.public_key()
        numbers = self._public.public_numbers()
        der = self._public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.kid = hashlib.sha256(der).hexdigest()[:26]
        self.jwk = {
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "kid": self.kid,
            "n": _b64(numbers.n),
            "e": _b64(numbers.e),
        }
        self._cache: dict[str, tuple[Claims, float]] = {}

    @classmethod
    def load_or_create(cls, data_dir: Path) -> TokenIssuer:
        """Use ``DIR/signing-key.pem``, creating it (mode 0600) on first start."""
        path = data_dir / "signing-key.pem"
        if path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(key, rsa.RSAPrivateKey):
                raise ValueError(f"{path} is not an RSA private key")
            return cls(key)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        return cls(key)

    def _sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid})

    def issue(self, project_id: bytes, client_id: str, permissions: list[str]) -> tuple[str, str]:
        """A fresh (access token, refresh token) pair for an API key."""
        now = int(time.time())
        project = ids.ulid_to_str(project_id)
        base = {"sub": client_id, "project": project, "iss": ISSUER, "iat": now}
        access = self._sign(
            {
                **base,
                "jti": ids.ulid_to_str(ids.new_ulid()),
                "aud": [AUDIENCE],
                "nbf": now,
                "exp": now + ACCESS_LIFETIME,
                "permissions": permissions,
            }
        )
        refresh = self._sign(
            {
                **base,
                "jti": ids.ulid_to_str(ids.new_ulid()),
                "aud": [AUDIENCE, REFRESH_AUDIENCE],
                "nbf": now + REFRESH_NOT_BEFORE,
                "exp": now + REFRESH_LIFETIME,
            }
        )
        return access, refresh

    def _decode(self, token: str, audience: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
            if header.get("kid") != self.kid:
                raise InvalidToken("unknown key id")
            claims: dict[str, Any] = jwt.decode(
                token,
                self._public,
                algorithms=["RS256"],
                audience=audience,
                issuer=ISSUER,
                options={"require": ["exp", "nbf", "iat", "sub", "aud", "iss"]},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from exc
        if claims["iat"] > time.time() + 5:
            raise InvalidToken("issued in the future")
        return claims

    def verify_access(self, token: str) -> Claims:
        """The claims of a valid access token; InvalidToken otherwise."""
        now = time.monotonic()
        hit = self._cache.get(token)
        if hit is not None and hit[1] > now and hit[0].expires > time.time():
            return hit[0]
        raw = self._decode(token, AUDIENCE)
        if REFRESH_AUDIENCE in raw.get("aud", []):
            raise InvalidToken("refresh tokens cannot be used as access tokens")
        try:
            project_id = ids.ulid_from_str(str(raw["project"]))
        except (KeyError, ValueError) as exc:
            raise InvalidToken("missing or invalid project claim") from exc
        perms = raw.get("permissions") or []
        if not isinstance(perms, list):
            raise InvalidToken("invalid permissions claim")
        claims = Claims(project_id, frozenset(map(str, perms)), str(raw["sub"]), float(raw["exp"]))
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[token] = (claims, now + _CACHE_SECONDS)
        return claims

    def verify_refresh(self, token: str) -> tuple[bytes, str]:
        """(project id, client id) of a valid refresh token; InvalidToken otherwise."""
        raw = self._decode(token, REFRESH_AUDIENCE)
        try:
            return ids.ulid_from_str(str(raw["project"])), str(raw["sub"])
        except (KeyError, ValueError) as exc:
            raise InvalidToken("missing or invalid project claim") from exc

"""Access tokens from the Ensign auth service, renewed in the background, HTTP off the loop."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from django_ensign.client import exceptions

logger = logging.getLogger(__name__)

# Renew this long before the access token expires, so calls never wait on HTTP.
RENEW_AHEAD = 300.0
# Treat a token as expired this long before its exp, for clock skew and call latency.
LEEWAY = 15.0


def jwt_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, unverified (the server verifies; we only read exp/nbf)."""
    try:
        payload = token.split(".")[1]
        padded = payload + "=" * (-len(payload) % 4)
        claims = json.loads(base64.urlsafe_b64decode(padded))
    except (IndexError, ValueError) as err:
        raise exceptions.AuthenticationError("the auth service returned a malformed token") from err
    if not isinstance(claims, dict):
        raise exceptions.AuthenticationError("the auth service returned a malformed token")
    return claims


@dataclass(frozen=True)
class _Tokens:
    access: str
    access_exp: float
    refresh: str
    refresh_nbf: float
    refresh_exp: float


class TokenSource:
    """Hands out ``authorization`` metadata for the client's API key.

    Thread-safe and loop-agnostic: one source serves every event loop the client runs in.
    """

    def __init__(
        self, auth_url: str, client_id: str, client_secret: str, *, timeout: float = 10.0
    ) -> None:
        self.auth_url = auth_url.rstrip("/")
        self._client_id = client_id
        self._client_secret = client_secret
        self._timeout = timeout
        self._lock = threading.Lock()
        self._tokens: _Tokens | None = None
        self._renewing = False
        self._tasks: set[asyncio.Task[None]] = set()
        #: Whether the auth service has answered once: later, unreachable means "down for
        #: now" (an outage) rather than "wrong URL".
        self.reached = False

    async def metadata(self) -> tuple[tuple[str, str], ...]:
        """gRPC call metadata carrying a valid bearer token."""
        return (("authorization", f"Bearer {await self.access_token()}"),)

    async def access_token(self) -> str:
        """A valid access token; waits for the auth service only when none is valid."""
        tokens = self._tokens
        now = time.time()
        if tokens is not None and tokens.access_exp - LEEWAY > now:
            if tokens.access_exp - RENEW_AHEAD <= now:
                self._renew_in_background()
            return tokens.access
        await asyncio.to_thread(self._renew_blocking, False)
        assert self._tokens is not None
        return self._tokens.access

    def _renew_in_background(self) -> None:
        with self._lock:
            if self._renewing:
                return
            self._renewing = True
        task = asyncio.get_running_loop().create_task(self._background())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _background(self) -> None:
        try:
            await asyncio.to_thread(self._renew_blocking, True)
        except exceptions.EnsignError as err:
            logger.warning("background token renewal failed: %s", err)
        finally:
            with self._lock:
                self._renewing = False

    def _renew_blocking(self, ahead: bool) -> None:
        with self._lock:
            now = time.time()
            current = self._tokens
            if current is not None:
                fresh_until = current.access_exp - (RENEW_AHEAD if ahead else LEEWAY)
                if fresh_until > now:
                    return  # someone renewed while we waited for the lock
                if current.refresh and current.refresh_nbf <= now < current.refresh_exp - LEEWAY:
                    try:
                        self._tokens = self._request(
                            "/v1/refresh", {"refresh_token": current.refresh}
                        )
                        return
                    except exceptions.AuthServiceUnreachable:
                        raise
                    except exceptions.AuthenticationError:
                        pass  # the refresh token was refused: log in again
            self._tokens = self._request(
                "/v1/authenticate",
                {"client_id": self._client_id, "client_secret": self._client_secret},
            )

    def _request(self, path: str, body: dict[str, str]) -> _Tokens:
        url = self.auth_url + path
        request = urllib.request.Request(
            url,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                payload = json.loads(response.read())
        except urllib.error.HTTPError as err:
            message = _error_message(err)
            if err.code >= 500 or err.code == 429:  # a proxy or the service itself, for now
                raise exceptions.AuthServiceUnreachable(
                    f"the Ensign auth service at {self.auth_url} is unavailable "
                    f"(HTTP {err.code}: {message})"
                ) from err
            raise exceptions.AuthenticationError(
                f"the auth service at {self.auth_url} refused the credentials "
                f"(HTTP {err.code}: {message})"
            ) from err
        except (urllib.error.URLError, OSError) as err:
            raise exceptions.AuthServiceUnreachable(
                f"cannot reach the Ensign auth service at {self.auth_url}: {err}"
            ) from err
        except ValueError as err:
            raise exceptions.AuthenticationError(
                f"the auth service at {self.auth_url} answered with invalid JSON"
            ) from err
        access = payload.get("access_token") if isinstance(payload, dict) else None
        if not isinstance(access, str) or not access:
            raise exceptions.AuthenticationError(
                f"the auth service at {self.auth_url} returned no access token"
            )
        access_exp = _number(jwt_claims(access).get("exp"), default=time.time() + 60.0)
        refresh = payload.get("refresh_token") or ""
        refresh_nbf = refresh_exp = 0.0
        if isinstance(refresh, str) and refresh:
            claims = jwt_claims(refresh)
            refresh_nbf = _number(claims.get("nbf"), default=0.0)
            refresh_exp = _number(claims.get("exp"), default=0.0)
        else:
            refresh = ""
        self.reached = True
        return _Tokens(access, access_exp, refresh, refresh_nbf, refresh_exp)


def _number(value: object, *, default: float) -> float:
    return (
        float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default
    )


def _error_message(err: urllib.error.HTTPError) -> str:
    try:
        data = json.loads(err.read())
    except (OSError, ValueError):
        return err.reason if isinstance(err.reason, str) else "error"
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return str(data["error"])
    return "error"

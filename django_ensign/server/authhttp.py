"""The HTTP auth service of PROTOCOL.md §2: a small asyncio HTTP/1.1 server with keep-alive."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

from django_ensign.server.accounts import KeyVerifier
from django_ensign.server.storage import Storage
from django_ensign.server.tokens import InvalidToken, TokenIssuer

log = logging.getLogger(__name__)

_MAX_BODY = 1 << 20
_REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
}


class AuthService:
    """Answers authenticate, refresh, JWKS and status requests."""

    def __init__(self, storage: Storage, issuer: TokenIssuer, version: str) -> None:
        self.storage = storage
        self.issuer = issuer
        self.version = version
        self.started = time.monotonic()
        self._keys = KeyVerifier()
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> None:
        """Listen on ``host:port``."""
        self._server = await asyncio.start_server(self._serve_client, host, port)

    async def stop(self) -> None:
        """Stop listening and close open connections."""
        if self._server is not None:
            self._server.close()
        for task in list(self._clients):
            task.cancel()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._clients.add(task)
        try:
            while True:
                request = await self._read_request(reader)
                if request is None:
                    break
                method, path, headers, body = request
                status, payload = await self._route(method, path, body)
                keep_alive = headers.get("connection", "").lower() != "close"
                data = json.dumps(payload).encode()
                head = (
                    f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}\r\n"
                    "Content-Type: application/json\r\n"
                    f"Content-Length: {len(data)}\r\n"
                    f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
                )
                writer.write(head.encode() + data)
                await writer.drain()
                if not keep_alive:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError, ValueError):
            pass
        finally:
            if task is not None:
                self._clients.discard(task)
            writer.close()

    @staticmethod
    async def _read_request(
        reader: asyncio.StreamReader,
    ) -> tuple[str, str, dict[str, str], bytes] | None:
        line = await reader.readline()
        if not line:
            return None
        parts = line.decode("latin-1").split()
        if len(parts) < 2:
            raise ValueError("malformed request line")
        headers: dict[str, str] = {}
        while True:
            raw = await reader.readline()
            if raw in (b"\r\n", b"\n", b""):
                break
            name, _, value = raw.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        if length > _MAX_BODY:
            raise ValueError("body too large")
        body = await reader.readexactly(length) if length else b""
        return parts[0].upper(), parts[1].split("?", 1)[0], headers, body

    async def _route(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        if path == "/.well-known/jwks.json" and method == "GET":
            return 200, {"keys": [self.issuer.jwk]}
        if path == "/v1/status" and method == "GET":
            uptime = time.monotonic() - self.started
            return 200, {"status": "ok", "uptime": f"{uptime:.3f}s", "version": self.version}
        if path in ("/v1/authenticate", "/v1/refresh"):
            if method != "POST":
                return 405, {"success": False, "error": "method not allowed"}
            try:
                data = json.loads(body or b"{}")
            except ValueError:
                data = None
            if not isinstance(data, dict):
                return 400, {"success": False, "error": "could not parse request"}
            if path == "/v1/authenticate":
                return await self._authenticate(data)
            return await self._refresh(data)
        return 404, {"success": False, "error": "resource not found"}

    def _tokens(self, project_id: bytes, client_id: str, permissions: list[str]) -> dict[str, Any]:
        access, refresh = self.issuer.issue(project_id, client_id, permissions)
        return {
            "access_token": access,
            "refresh_token": refresh,
            "last_login": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }

    async def _authenticate(self, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        client_id = data.get("client_id")
        secret = data.get("client_secret")
        if (
            not isinstance(client_id, str)
            or not isinstance(secret, str)
            or not (client_id and secret)
        ):
            return 400, {"success": False, "error": "missing credentials"}
        key = await self.storage.read(lambda conn: self._keys.verify(conn, client_id, secret))
        if key is None:
            log.info("authentication failed for client %s", client_id[:40])
            return 403, {"success": False, "error": "invalid credentials"}
        return 200, self._tokens(key.project_id, key.client_id, key.permissions)

    async def _refresh(self, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        token = data.get("refresh_token")
        if not isinstance(token, str) or not token:
            return 400, {"success": False, "error": "missing credentials"}
        try:
            _project, client_id = self.issuer.verify_refresh(token)
        except InvalidToken:
            return 403, {"success": False, "error": "invalid credentials"}
        key = await self.storage.read(lambda conn: self._keys.lookup(conn, client_id))
        if key is None:
            return 403, {"success": False, "error": "invalid credentials"}
        return 200, self._tokens(key.project_id, key.client_id, key.permissions)

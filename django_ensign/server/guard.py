"""Per-call authentication and permission checks for the gRPC service (PROTOCOL.md §2)."""

from __future__ import annotations

from typing import NamedTuple

import grpc

from django_ensign.server.tokens import Claims, InvalidToken, TokenIssuer

PERMISSION_DENIED = "not authorized to perform this action"


class Refusal(NamedTuple):
    """Why a call is refused: the status it ends with."""

    code: grpc.StatusCode
    message: str


class Guard:
    """Verifies the bearer token of a call and its permissions, aborting the call if not."""

    def __init__(self, issuer: TokenIssuer) -> None:
        self.issuer = issuer

    async def check(
        self,
        context: grpc.aio.ServicerContext[object, object],
        any_of: tuple[str, ...] = (),
        all_of: tuple[str, ...] = (),
    ) -> Claims:
        """The caller's claims; aborts UNAUTHENTICATED or PERMISSION_DENIED as the spec says."""
        verdict = self.verdict(context, any_of, all_of)
        if isinstance(verdict, Refusal):
            await context.abort(verdict.code, verdict.message)
        return verdict

    def verdict(
        self,
        context: grpc.aio.ServicerContext[object, object],
        any_of: tuple[str, ...] = (),
        all_of: tuple[str, ...] = (),
    ) -> Claims | Refusal:
        """The caller's claims, or why the call is refused (for callers that abort later)."""
        header: str | bytes | None = None
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                header = value
                break
        if header is None:
            return Refusal(grpc.StatusCode.UNAUTHENTICATED, "missing credentials")
        if isinstance(header, bytes):
            header = header.decode("latin-1")
        if not header or not header.startswith("Bearer ") or len(header) <= 7:
            return Refusal(grpc.StatusCode.UNAUTHENTICATED, "invalid credentials")
        try:
            claims = self.issuer.verify_access(header[7:])
        except InvalidToken:
            return Refusal(grpc.StatusCode.UNAUTHENTICATED, "invalid credentials")
        perms = claims.permissions
        if (any_of and perms.isdisjoint(any_of)) or not perms.issuperset(all_of):
            return Refusal(grpc.StatusCode.PERMISSION_DENIED, PERMISSION_DENIED)
        return claims

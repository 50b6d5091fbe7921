"""What every streaming RPC shares: its shutdown lifecycle and its opening permission check."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from django_ensign.server.state import ServerState
from django_ensign.server.tokens import Claims

Context = grpc.aio.ServicerContext[Any, Any]
SHUTTING_DOWN = "server is shutting down"
NO_TOPICS = "no topics available"


class StreamCall:
    """One streaming call, registered with the server so a shutdown can end it cleanly."""

    state: ServerState
    context: Context
    closing: bool
    task: asyncio.Task[Any] | None

    async def run(self, requests: Any) -> None:
        """Serve the call; a cancel caused by a shutdown ends it UNAVAILABLE."""
        self.task = asyncio.current_task()
        self.state.streams.add(self)
        try:
            await self._run(requests)
        except asyncio.CancelledError:
            if not self.closing:
                raise
            await self.context.abort(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)
        finally:
            self.state.streams.discard(self)

    async def shutdown(self) -> None:
        """Finish what is in flight and end the call."""
        raise NotImplementedError

    async def _run(self, requests: Any) -> None:
        raise NotImplementedError

    async def authorize(self, role: str) -> Claims:
        """The caller's claims, aborting unless it holds ``role`` and its project has topics."""
        claims = await self.state.guard.check(self.context, any_of=(role,))
        if not self.state.registry.of_project(claims.project_id):
            await self.context.abort(grpc.StatusCode.FAILED_PRECONDITION, NO_TOPICS)
        return claims

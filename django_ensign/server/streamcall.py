"""What every streaming RPC shares: its shutdown lifecycle and its opening permission check."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import grpc

from django_ensign.server.guard import Refusal
from django_ensign.server.state import ServerState
from django_ensign.server.tokens import Claims

Context = grpc.aio.ServicerContext[Any, Any]
SHUTTING_DOWN = "server is shutting down"
NO_TOPICS = "no topics available"
#: How long a refused stream waits for the client's opening message before it ends.
OPENING_GRACE = 1.0


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

    async def authorize(self, role: str, requests: Any) -> Claims:
        """The caller's claims, aborting unless it holds ``role`` and its project has topics."""
        verdict = self.state.guard.verdict(self.context, any_of=(role,))
        if isinstance(verdict, Refusal):
            await self._refuse(requests, verdict.code, verdict.message)
        assert isinstance(verdict, Claims)
        if not self.state.registry.of_project(verdict.project_id):
            await self._refuse(requests, grpc.StatusCode.FAILED_PRECONDITION, NO_TOPICS)
        return verdict

    async def _refuse(self, requests: Any, code: grpc.StatusCode, message: str) -> None:
        """End the call with ``code`` once the client's opening message is in (or a moment).

        A client sends its opening message as soon as the call starts. Ending the call
        while that write is still in flight makes grpc core fail it on the client with
        its own INTERNAL error, and the client never sees this status; reading the
        message first lets the write finish.
        """
        with contextlib.suppress(Exception):
            await asyncio.wait_for(requests.__anext__(), OPENING_GRACE)
        await self.context.abort(code, message)

"""Opening a Publish or Subscribe stream: send the first message, read the server's first reply."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import grpc.aio

#: How often an open is retried when grpc core hides the server's status (see below).
OPEN_ATTEMPTS = 6
_CORE_WRITE_FAILURE = "Internal error from Core"


def hides_server_status(err: grpc.aio.AioRpcError) -> bool:
    """Whether ``err`` is grpc core's own write failure rather than the server's answer.

    A server that refuses a stream as soon as it sees the headers (bad token, missing
    permission, no topics) may reset it while our first message is still being
    sent; grpcio then fails the call with INTERNAL "Internal error from Core" and
    the server's status is lost. Trying again shows the real status, because the race
    is lost only now and then.
    """
    return err.code() == grpc.StatusCode.INTERNAL and err.details() == _CORE_WRITE_FAILURE


async def open_stream(start: Callable[[], Awaitable[Any]], first: Any) -> tuple[Any, Any]:
    """Start a stream call with ``start()``, write ``first`` and return ``(call, reply)``.

    Raises the call's :class:`grpc.aio.AioRpcError` (after cancelling the call); a
    core write failure is retried so that the server's own status is what surfaces.
    Whatever else ends the open, a cancellation included, cancels the call too.
    """
    for attempt in range(1, OPEN_ATTEMPTS + 1):
        call = await start()
        try:
            await call.write(first)
            return call, await call.read()
        except grpc.aio.AioRpcError as err:
            call.cancel()
            if attempt == OPEN_ATTEMPTS or not hides_server_status(err):
                raise
        except BaseException:
            # Cancelled, say by the caller's wait_for: a stream left open would keep
            # receiving a consumer group's events that nobody reads.
            call.cancel()
            raise
    raise AssertionError("unreachable")  # pragma: no cover

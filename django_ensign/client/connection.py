"""gRPC channels, one per event loop, with TLS, keepalive and message limits set once."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio

from django_ensign import __version__
from django_ensign.client import exceptions, framing
from django_ensign.client.auth import TokenSource
from django_ensign.client.config import ClientConfig
from django_ensign.client.errors import translate
from django_ensign.proto.api.v1beta1 import ensign_pb2, ensign_pb2_grpc

USER_AGENT = f"django-ensign/{__version__}"
# Ensign servers close connections that ping more often than every 5 minutes.
KEEPALIVE_MS = 330_000
#: Seconds a keepalive ping may go unanswered. On Linux gRPC also sets it as the socket's
#: TCP_USER_TIMEOUT: how long sent bytes may stay unacknowledged before the connection is
#: dropped, and with it what was unsent (a partition that drops packets, not a reset).
KEEPALIVE_TIMEOUT = 20.0
#: A day: gRPC keeps the timeout in milliseconds in a C int.
MAX_KEEPALIVE_TIMEOUT = 86_400.0

CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.max_receive_message_length", framing.MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", framing.MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", KEEPALIVE_MS),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.max_pings_without_data", 0),
    # grpc's own reconnect backoff grows to 2 minutes; our streams retry on their own
    # schedule and need the channel to try again promptly after a server restart.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2_000),
    ("grpc.primary_user_agent", USER_AGENT),
)

#: What ``read()`` on a grpc.aio stream returns at its end (absent from grpc-stubs).
EOF: Any = grpc.aio.EOF  # type: ignore[attr-defined]

PUBLISH_METHOD = "/ensign.v1beta1.Ensign/Publish"


def _identity(data: bytes) -> bytes:
    return data


@dataclass
class LoopResources:
    """What the client keeps per event loop: a channel and the objects using it."""

    channel: grpc.aio.Channel
    stub: Any  # grpc-stubs types the sync API only
    publish: Callable[..., Any]
    extras: dict[str, Any] = field(default_factory=dict)


class Connection:
    """Credentials, token source and one channel per event loop for one client."""

    def __init__(
        self,
        config: ClientConfig,
        *,
        rpc_timeout: float = 30.0,
        keepalive_timeout: float = KEEPALIVE_TIMEOUT,
    ) -> None:
        self.config = config
        self.tokens = TokenSource(config.auth_url, config.client_id, config.client_secret)
        self.rpc_timeout = rpc_timeout
        self._options = (
            *CHANNEL_OPTIONS,
            ("grpc.keepalive_timeout_ms", max(1, round(keepalive_timeout * 1000))),
        )
        #: Set by the client's close(): no channel is opened after it.
        self.closed = False
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopResources] = (
            weakref.WeakKeyDictionary()
        )

    def resources(self) -> LoopResources:
        """This loop's channel and helpers, created on first use."""
        if self.closed:
            raise exceptions.ClientClosed()
        loop = asyncio.get_running_loop()
        found = self._loops.get(loop)
        if found is None:
            channel = self._new_channel()
            found = LoopResources(
                channel=channel,
                stub=ensign_pb2_grpc.EnsignStub(channel),
                # Publish requests are framed by hand (publisher.py) for speed, so the
                # request side of this call takes bytes as they are.
                publish=channel.stream_stream(
                    PUBLISH_METHOD,
                    request_serializer=_identity,
                    response_deserializer=ensign_pb2.PublisherReply.FromString,
                ),
            )
            self._loops[loop] = found
        return found

    def current(self) -> LoopResources | None:
        """This loop's resources if they exist."""
        try:
            return self._loops.get(asyncio.get_running_loop())
        except RuntimeError:
            return None

    def others(self) -> list[tuple[asyncio.AbstractEventLoop, LoopResources]]:
        """Resources of the loops other than the running one."""
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        return [(loop, res) for loop, res in list(self._loops.items()) if loop is not running]

    def _new_channel(self) -> grpc.aio.Channel:
        if self.config.insecure:
            return grpc.aio.insecure_channel(self.config.endpoint, options=self._options)
        return grpc.aio.secure_channel(
            self.config.endpoint, grpc.ssl_channel_credentials(), options=self._options
        )

    async def unary(
        self, method: str, request: Any, *, auth: bool = True, context: str = ""
    ) -> Any:
        """Call a unary RPC by name on this loop's channel, errors translated."""
        stub = self.resources().stub
        metadata = await self.tokens.metadata() if auth else None
        try:
            return await getattr(stub, method)(request, metadata=metadata, timeout=self.rpc_timeout)
        except grpc.aio.AioRpcError as err:
            raise translate(err, context=context) from err

    async def close_current(self) -> None:
        """Close the running loop's channel."""
        loop = asyncio.get_running_loop()
        found = self._loops.pop(loop, None)
        if found is not None:
            await found.channel.close(None)

    def close_others(self) -> None:
        """Ask other live loops to close their channels; forget the rest."""
        for loop, found in self.others():
            self._loops.pop(loop, None)
            if not loop.is_closed() and loop.is_running():
                with contextlib.suppress(RuntimeError):
                    asyncio.run_coroutine_threadsafe(found.channel.close(None), loop)

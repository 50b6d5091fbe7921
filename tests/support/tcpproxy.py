"""A loopback TCP forwarder a test can cut and heal: a network partition of one client."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable


class TcpProxy:
    """Forwards connections from a free loopback port to ``host:port``, on a thread of its own.

    :meth:`cut` resets every connection through it and refuses new ones until :meth:`heal`,
    so whatever connects through it (a database driver, a gRPC channel) loses its peer
    while everything else on the machine keeps it.
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._cut = False
        self._transports: set[asyncio.Transport] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="tcp-proxy", daemon=True)

    def start(self) -> TcpProxy:
        self._thread.start()
        if not self._ready.wait(10) or not self.port:
            raise RuntimeError("the proxy did not start")
        return self

    def cut(self) -> None:
        """Reset every connection through the proxy and refuse new ones."""
        self._call(self._cut_all)

    def heal(self) -> None:
        """Accept and forward connections again."""
        self._cut = False

    def close(self) -> None:
        if self._loop is not None and self._closing is not None:
            self._call(self._closing.set)
        self._thread.join(10)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, func: Callable[[], object]) -> None:
        assert self._loop is not None
        done = threading.Event()

        def run() -> None:
            try:
                func()
            finally:
                done.set()

        self._loop.call_soon_threadsafe(run)
        done.wait(10)

    def _cut_all(self) -> None:
        self._cut = True
        for transport in list(self._transports):
            transport.abort()
        self._transports.clear()

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._closing = asyncio.Event()
        server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._closing.wait()
            self._cut_all()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        if self._cut:  # cut while this connection was being made
            writer.transport.abort()
            up_writer.transport.abort()
            return
        ends = {writer.transport, up_writer.transport}
        self._transports |= ends  # type: ignore[arg-type]
        try:
            await asyncio.gather(
                _pipe(reader, up_writer), _pipe(up_reader, writer), return_exceptions=True
            )
        finally:
            for transport in ends:
                self._transports.discard(transport)
                transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy ``reader`` to ``writer`` until either end closes, then reset the writer."""
    with contextlib.suppress(OSError, ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()

"""The echo ceiling's server: ``python -m bench.ceilings.echo_server --port P --reply HEX``.

A bare grpc.aio generic handler that answers every request on its bidi stream with one
fixed reply (the bytes of the publish reply it stands in for). Runs in its own process,
as the embedded server does, and prints ``ready`` once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import grpc

SERVICE = "bench.Echo"
METHOD = f"/{SERVICE}/Stream"


def _handler(reply: bytes) -> Any:
    async def stream(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
        async for _ in requests:
            yield reply

    return grpc.method_handlers_generic_handler(
        SERVICE, {"Stream": grpc.stream_stream_rpc_method_handler(stream)}
    )


async def serve(port: int, reply: bytes) -> None:
    """Listen on 127.0.0.1:``port`` until SIGTERM or SIGINT."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((_handler(reply),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await server.stop(1)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and serve."""
    parser = argparse.ArgumentParser(prog="python -m bench.ceilings.echo_server")
    parser.add_argument("--port", type=int, required=True, help="port on 127.0.0.1")
    parser.add_argument("--reply", required=True, help="hex bytes sent for every request")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.port, bytes.fromhex(args.reply)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

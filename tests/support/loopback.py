"""A grpc.aio server under test, reached over a real loopback socket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc


@asynccontextmanager
async def loopback_channel(server: grpc.aio.Server) -> AsyncIterator[grpc.aio.Channel]:
    """Start `server` (its services already added) on a free 127.0.0.1 port; a channel
    to it; the server stopped without grace when the block ends."""
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel
    finally:
        await server.stop(None)

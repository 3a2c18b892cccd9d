"""A client that goes away cancels the server-streaming RPC behind it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import uvicorn

from gateway.app import Gateway
from gateway.bindings import bindings_for
from gateway.inprocess import HandlerRegistry, InProcessUpstream
from tests.support import protos
from tests.support.echo_server import EchoService


class _Recording(EchoService):
    def __init__(self) -> None:
        self.sent = 0
        self.closed = asyncio.Event()

    async def Count(self, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            for i in range(request.count):
                await asyncio.sleep(0.05)
                self.sent += 1
                yield protos.echo_pb2().Kitchen(id=str(i))
        finally:
            self.closed.set()


async def test_client_disconnect_cancels_the_stream() -> None:
    servicer = _Recording()
    registry = HandlerRegistry()
    protos.echo_pb2_grpc().add_EchoServiceServicer_to_server(servicer, registry)
    service = protos.echo_pb2().DESCRIPTOR.services_by_name["EchoService"]
    app = Gateway(bindings_for([service]), InProcessUpstream(registry.handlers))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
            client.stream("GET", "/v1/count?count=1000") as response,
        ):
            assert response.status_code == 200
            async for _line in response.aiter_lines():
                break  # read one message, then hang up
        await asyncio.wait_for(servicer.closed.wait(), timeout=5)
        assert servicer.sent < 100
    finally:
        server.should_exit = True
        await task

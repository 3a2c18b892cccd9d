"""`server.app.GenericHandlersOnly`: services registered through it are served by their
generic handlers alone, so grpc.aio's accept loop waits on one pending request per
call instead of one per registered method (a cost that grows with every method
served). Real grpc.aio servers on loopback; `asyncio.wait` is wrapped only to count
what the accept loop waits on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from server.app import GenericHandlersOnly
from tests.support import echo_server
from tests.support.loopback import loopback_channel

pb = echo_server.pb
ECHO_METHODS = len(pb.DESCRIPTOR.services_by_name["EchoService"].methods)
HEALTH_METHODS = len(health_pb2.DESCRIPTOR.services_by_name["Health"].methods)


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of awaitables of every `asyncio.wait` call from here on."""
    sizes: list[int] = []
    real = asyncio.wait

    async def counting(fs: Any, *args: Any, **kwargs: Any) -> Any:
        fs = list(fs)
        sizes.append(len(fs))
        return await real(fs, *args, **kwargs)

    monkeypatch.setattr(asyncio, "wait", counting)
    return sizes


async def _serve(
    wrap: Callable[[grpc.aio.Server], Any],
) -> AsyncIterator[grpc.aio.Channel]:
    server = grpc.aio.server()
    target = wrap(server)
    echo_server.pb_grpc.add_EchoServiceServicer_to_server(echo_server.EchoService(), target)
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), target)
    async with loopback_channel(server) as channel:
        yield channel


async def test_every_method_is_served_by_its_generic_handler(waits: list[int]) -> None:
    async for channel in _serve(GenericHandlersOnly):
        echoed = await echo_server.pb_grpc.EchoServiceStub(channel).Echo(
            pb.Kitchen(id="k1", name="pantry")
        )
        assert (echoed.id, echoed.name) == ("k1", "pantry")
        checked = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert checked.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await channel.unary_unary("/gwtest.v1.EchoService/NoSuchMethod")(b"")
        assert unknown.value.code() == grpc.StatusCode.UNIMPLEMENTED
    # The accept loop waited on the one generic request each time, for three calls.
    assert waits and set(waits) == {1}


async def test_registered_methods_would_be_waited_on_one_by_one(waits: list[int]) -> None:
    """The cost the wrapper removes, shown on the same services registered directly
    (if grpc.aio stops doing this, the wrapper can go)."""
    async for channel in _serve(lambda server: server):
        await echo_server.pb_grpc.EchoServiceStub(channel).Echo(pb.Kitchen(id="k1"))
    # One pending request per registered method (Echo's and Health's), plus the generic one.
    assert max(waits) == ECHO_METHODS + HEALTH_METHODS + 1


async def test_a_service_registered_by_its_methods_alone_is_still_served(
    waits: list[int],
) -> None:
    """A registration without the generic handler (not what grpcio-tools generates
    today) gets one made of its methods, never left UNIMPLEMENTED."""
    server = grpc.aio.server()
    handlers = {
        "Check": grpc.unary_unary_rpc_method_handler(
            health.aio.HealthServicer().Check,
            request_deserializer=health_pb2.HealthCheckRequest.FromString,
            response_serializer=health_pb2.HealthCheckResponse.SerializeToString,
        )
    }
    GenericHandlersOnly(server).add_registered_method_handlers("grpc.health.v1.Health", handlers)
    async with loopback_channel(server) as channel:
        checked = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert checked.status == health_pb2.HealthCheckResponse.SERVING
    assert waits and set(waits) == {1}

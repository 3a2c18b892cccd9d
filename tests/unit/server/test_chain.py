"""The interceptor chain, over a real socket and in process, for a service that is not
ours (tests/protos' EchoService): tracing, error mapping, tenancy and operator audit
as plain coroutines, unary and server-streaming alike; and the in-process flag, which
a network caller cannot claim."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from gateway.inprocess import HandlerRegistry, InProcessUpstream
from gateway.upstream import UpstreamError
from orchestrator.api.v1 import options_pb2
from server.domain.context import CallContext, current_call
from server.domain.errors import FailedPrecondition
from server.interceptors.audit import OperatorAudit
from server.interceptors.base import is_in_process
from server.interceptors.chain import InterceptorChain, Stage, Streaming, Unary
from server.interceptors.errors import ErrorMapping
from server.interceptors.tenancy import Tenancy
from server.interceptors.tracing import Tracing
from server.policy import MethodPolicy
from tests.support import echo_server
from tests.support.loopback import loopback_channel

pb = echo_server.pb
SERVICE = "/gwtest.v1.EchoService"
ECHO, COUNT, FAIL = f"{SERVICE}/Echo", f"{SERVICE}/Count", f"{SERVICE}/Fail"
GET = f"{SERVICE}/GetKitchen"


def _policy(method: str, *, tenant: int, audit: bool) -> MethodPolicy:
    return MethodPolicy(
        full_method=method,
        authenticated=False,
        scopes=(),
        tenant_mode=tenant,
        operator_audit=audit,
        permissions=(),
    )


POLICIES = {
    ECHO: _policy(ECHO, tenant=options_pb2.TENANT_MODE_HEADER, audit=True),
    COUNT: _policy(COUNT, tenant=options_pb2.TENANT_MODE_HEADER, audit=False),
    FAIL: _policy(FAIL, tenant=options_pb2.TENANT_MODE_NONE, audit=False),
    GET: _policy(GET, tenant=options_pb2.TENANT_MODE_NONE, audit=False),
}


def _stages() -> tuple[Stage, ...]:
    return (Tracing(), ErrorMapping(), Tenancy(POLICIES), OperatorAudit(POLICIES))


class CallEcho(echo_server.EchoService):
    """Answers with what the chain resolved: the call context and the in-process flag."""

    async def Echo(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        call = current_call()
        return pb.Kitchen(
            id=call.tenant_id or "",
            name=f"{call.operator_reason}|{call.trace_id}|{is_in_process(context)}",
        )

    async def GetKitchen(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        if request.id == "bug":
            raise RuntimeError("a bug")
        return pb.Kitchen(id=request.id, name=str(is_in_process(context)))


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    server = grpc.aio.server(interceptors=(InterceptorChain(_stages()),))
    echo_server.pb_grpc.add_EchoServiceServicer_to_server(CallEcho(), server)
    async with loopback_channel(server) as channel:
        yield channel


def _unary(channel: grpc.aio.Channel, method: str) -> grpc.aio.UnaryUnaryMultiCallable:
    request_type = pb.GetKitchenRequest if method == GET else pb.Kitchen
    return channel.unary_unary(
        method,
        request_serializer=request_type.SerializeToString,
        response_deserializer=pb.Kitchen.FromString,
    )


def _upstream() -> InProcessUpstream:
    registry = HandlerRegistry()
    echo_server.pb_grpc.add_EchoServiceServicer_to_server(CallEcho(), registry)
    chain = InterceptorChain(_stages())
    chain.prepare(registry.handlers)
    return InProcessUpstream(registry.handlers, (chain,))


TENANT = ("x-stella-tenant", "acme")
REASON = ("x-stella-operator-reason", "checking")


async def test_unary_call_gets_its_tenant_reason_and_trace_id(channel: grpc.aio.Channel) -> None:
    call = _unary(channel, ECHO)(
        pb.Kitchen(), metadata=(TENANT, REASON, ("x-stella-trace-id", "trace-7"))
    )
    response = await call
    assert (response.id, response.name) == ("acme", "checking|trace-7|False")
    assert ("x-stella-trace-id", "trace-7") in list(await call.initial_metadata())


@pytest.mark.parametrize(
    ("metadata", "reason", "field"),
    [
        ((REASON,), "TENANT_REQUIRED", "X-Stella-Tenant"),
        ((TENANT,), "OPERATOR_REASON_REQUIRED", "X-Stella-Operator-Reason"),
    ],
    ids=["no-tenant", "no-reason"],
)
async def test_refusals_leave_as_rich_statuses(
    channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...], reason: str, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _unary(channel, ECHO)(pb.Kitchen(), metadata=metadata)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith(f"{field}: ")
    assert reason in str(dict(caught.value.trailing_metadata() or ()))


async def test_a_bug_is_internal_with_the_trace_id(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _unary(channel, GET)(
            pb.GetKitchenRequest(id="bug"), metadata=(("x-stella-trace-id", "trace-bug"),)
        )
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert caught.value.details() == "internal error; quote trace id trace-bug when reporting"


async def test_servicer_aborts_pass_through_unchanged(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _unary(channel, FAIL)(pb.Kitchen(name="NOT_FOUND"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert caught.value.details() == "failed with NOT_FOUND"


async def test_streaming_method_is_chained(channel: grpc.aio.Channel) -> None:
    count = channel.unary_stream(
        COUNT,
        request_serializer=pb.StreamRequest.SerializeToString,
        response_deserializer=pb.Kitchen.FromString,
    )
    call = count(pb.StreamRequest(count=3), metadata=(TENANT, ("x-stella-trace-id", "t-s")))
    assert [item.id async for item in call] == ["0", "1", "2"]
    assert ("x-stella-trace-id", "t-s") in list(await call.initial_metadata())
    refused = count(pb.StreamRequest(count=3))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        [item async for item in refused]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("X-Stella-Tenant: ")
    aborted = count(pb.StreamRequest(count=-1), metadata=(TENANT,))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        [item async for item in aborted]
    assert (caught.value.code(), caught.value.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "count must not be negative",
    )


async def test_a_handler_that_writes_its_own_stream_is_chained() -> None:
    """grpc.aio lets a server-streaming handler be a coroutine that sends with
    `context.write` (grpc_health's Watch, used by client-side health checking) instead
    of an async generator: the chain awaits it, so the stream reaches the client with
    the trace header, each status as it changes."""
    servicer = health.aio.HealthServicer()
    server = grpc.aio.server(interceptors=(InterceptorChain(_stages()),))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    await servicer.set("svc", health_pb2.HealthCheckResponse.SERVING)
    async with loopback_channel(server) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service="svc"),
            metadata=(("x-stella-trace-id", "t-w"),),
        )
        first = await watch.read()
        await servicer.set("svc", health_pb2.HealthCheckResponse.NOT_SERVING)
        second = await watch.read()
        assert (first.status, second.status) == (
            health_pb2.HealthCheckResponse.SERVING,
            health_pb2.HealthCheckResponse.NOT_SERVING,
        )
        assert ("x-stella-trace-id", "t-w") in list(await watch.initial_metadata())
        watch.cancel()


def test_a_stage_a_method_does_not_need_adds_no_frame() -> None:
    async def inner(request: Any, context: grpc.aio.ServicerContext, call: CallContext) -> Any:
        return request

    assert Tenancy(POLICIES).unary(FAIL, inner) is inner
    assert OperatorAudit(POLICIES).unary(COUNT, inner) is inner
    assert OperatorAudit(POLICIES).unary("/unknown.Service/Method", inner) is inner
    assert Tenancy(POLICIES).unary(ECHO, inner) is not inner


async def test_in_process_calls_are_flagged_and_network_calls_cannot_claim_it(
    channel: grpc.aio.Channel,
) -> None:
    upstream = _upstream()
    result = await upstream.unary(
        GET, pb.GetKitchenRequest(id="k"), pb.Kitchen, metadata=(), timeout=5
    )
    response: Any = result.response
    assert response.name == "True"
    # Over a socket, nothing the caller sends makes a call in-process: not the peer
    # string the in-process context reports, not a header named like the flag.
    imitation = (("in_process", "true"), ("in-process", "True"), ("peer", "inprocess:gateway"))
    response = await _unary(channel, GET)(pb.GetKitchenRequest(id="k"), metadata=imitation)
    assert response.name == "False"


async def test_in_process_chain_maps_errors_and_streams() -> None:
    upstream = _upstream()
    with pytest.raises(UpstreamError) as caught:
        await upstream.unary(ECHO, pb.Kitchen(), pb.Kitchen, metadata=(TENANT,), timeout=5)
    assert caught.value.status.code == code_pb2.INVALID_ARGUMENT
    assert caught.value.status.message.startswith("X-Stella-Operator-Reason: ")
    stream = await upstream.stream(
        COUNT, pb.StreamRequest(count=2), pb.Kitchen, metadata=(TENANT,), timeout=5
    )
    items: list[Any] = [item async for item in stream.messages]
    assert [item.id for item in items] == ["0", "1"]


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("X-Stella-Operator-Reason", "disk\x00full"),
        ("X-Stella-Operator-Ticket", "OPS-1\n2"),
    ],
    ids=["reason", "ticket"],
)
async def test_an_in_process_operator_header_with_a_control_character_is_refused(
    header: str, value: str
) -> None:
    """gRPC core and the HTTP gateway never pass a control character in a header; an
    in-process caller's metadata is not checked by either, and a NUL reached the
    audit entry's PostgreSQL INSERT (500). The chain refuses it naming the header."""
    reason = () if header == "X-Stella-Operator-Reason" else (REASON,)
    metadata = (TENANT, *reason, (header.lower(), value))
    with pytest.raises(UpstreamError) as caught:
        await _upstream().unary(ECHO, pb.Kitchen(), pb.Kitchen, metadata=metadata, timeout=5)
    assert caught.value.status.code == code_pb2.INVALID_ARGUMENT
    assert caught.value.status.message == f"{header}: must not contain control characters"


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"\x12\x01\xff", "a string field is not valid UTF-8"),
        (b"\xff\xff\xff", "its bytes are not in the protocol buffers wire format"),
    ],
    ids=["bad-utf8", "not-protobuf"],
)
async def test_a_request_that_does_not_parse_is_invalid_argument_after_admission(
    channel: grpc.aio.Channel, raw: bytes, problem: str
) -> None:
    """grpc.aio answered UNKNOWN "Unexpected <class 'google.protobuf.message.
    DecodeError'>: ..." (and logged a traceback) for bytes that are not the method's
    request message. Now INVALID_ARGUMENT in the product's words, with ErrorInfo
    INVALID_MESSAGE, and only once the stages admitted the call (no tenant: that
    refusal comes first)."""
    echo = channel.unary_unary(ECHO, response_deserializer=pb.Kitchen.FromString)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await echo(raw, metadata=(TENANT, REASON))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == (
        f"the request is not a valid gwtest.v1.Kitchen message: {problem}"
    )
    details = dict(caught.value.trailing_metadata() or ())["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(details)
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert (info.reason, dict(info.metadata)) == (
        "INVALID_MESSAGE",
        {"messageType": "gwtest.v1.Kitchen"},
    )
    with pytest.raises(grpc.aio.AioRpcError) as first:
        await echo(raw, metadata=(REASON,))
    assert first.value.details().startswith("X-Stella-Tenant: ")


class HeldOpen:
    """An outermost stage that, once the rest of the chain has answered, waits for
    `released` before it lets the call end: what a caller can see before then was sent
    while the outer stages (metrics, tracing) were still recording the call."""

    def __init__(self) -> None:
        self.released = asyncio.Event()
        self.ended: list[str] = []

    def unary(self, method: str, inner: Unary) -> Unary:
        async def held(request: Any, context: grpc.aio.ServicerContext, call: CallContext) -> Any:
            try:
                return await inner(request, context, call)
            finally:
                await self.released.wait()
                self.ended.append(method)

        return held

    def streaming(self, method: str, inner: Streaming) -> Streaming:
        async def held(
            request: Any, context: grpc.aio.ServicerContext, call: CallContext
        ) -> AsyncIterator[Any]:
            try:
                async for item in inner(request, context, call):
                    yield item
            finally:
                await self.released.wait()
                self.ended.append(method)

        return held


class FailingCount(CallEcho):
    async def Count(self, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        for i in range(request.count):
            yield pb.Kitchen(id=str(i))
        raise FailedPrecondition("the count ran out", reason="COUNT_RAN_OUT")


async def test_a_refusal_is_sent_only_after_the_outer_stages_have_ended() -> None:
    """The error funnel sets the status and lets the handler return (grpc.aio sends it
    then) instead of sending it at once: a call counted by the metrics stage is counted
    before its caller hears the answer (CI once scraped /metrics after a refused call
    and found it not yet counted)."""
    held = HeldOpen()
    server = grpc.aio.server(interceptors=(InterceptorChain((held, *_stages())),))
    echo_server.pb_grpc.add_EchoServiceServicer_to_server(FailingCount(), server)
    async with loopback_channel(server) as channel:
        refused = asyncio.ensure_future(_unary(channel, ECHO)(pb.Kitchen(), metadata=(REASON,)))
        count = channel.unary_stream(
            COUNT,
            request_serializer=pb.StreamRequest.SerializeToString,
            response_deserializer=pb.Kitchen.FromString,
        )
        stream = count(pb.StreamRequest(count=2), metadata=(TENANT,))
        assert [(await stream.read()).id for _ in range(2)] == ["0", "1"]
        ended = asyncio.ensure_future(stream.read())
        await asyncio.sleep(0.3)
        assert (refused.done(), ended.done(), held.ended) == (False, False, [])
        held.released.set()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await refused
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details().startswith("X-Stella-Tenant: ")
        assert "TENANT_REQUIRED" in str(dict(caught.value.trailing_metadata() or ()))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ended
        assert (caught.value.code(), caught.value.details()) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "the count ran out",
        )
        assert "COUNT_RAN_OUT" in str(dict(caught.value.trailing_metadata() or ()))
        assert sorted(held.ended) == sorted([ECHO, COUNT])


async def test_a_servicers_own_abort_is_sent_only_after_the_outer_stages_have_ended() -> None:
    """A servicer that is not ours ends calls with `context.abort` (grpc_health's Check
    of an unknown service, the echo service's Fail with a rich status): its status
    reaches the caller after the outer stages have recorded the call, like the
    funnel's, with the code, details and trailers it aborted with."""
    held = HeldOpen()
    servicer = health.aio.HealthServicer()
    server = grpc.aio.server(interceptors=(InterceptorChain((held, *_stages())),))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    echo_server.pb_grpc.add_EchoServiceServicer_to_server(CallEcho(), server)
    async with loopback_channel(server) as channel:
        check = health_pb2_grpc.HealthStub(channel).Check
        unknown = asyncio.ensure_future(check(health_pb2.HealthCheckRequest(service="nope")))
        failed = asyncio.ensure_future(_unary(channel, FAIL)(pb.Kitchen(name="NOT_FOUND")))
        count = channel.unary_stream(
            COUNT,
            request_serializer=pb.StreamRequest.SerializeToString,
            response_deserializer=pb.Kitchen.FromString,
        )
        stream = count(pb.StreamRequest(count=-1), metadata=(TENANT,))
        ended = asyncio.ensure_future(stream.read())
        await asyncio.sleep(0.3)
        assert (unknown.done(), failed.done(), ended.done(), held.ended) == (
            False,
            False,
            False,
            [],
        )
        held.released.set()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await unknown
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await failed
        assert (caught.value.code(), caught.value.details()) == (
            grpc.StatusCode.NOT_FOUND,
            "failed with NOT_FOUND",
        )
        assert "ECHO_FAILURE" in str(dict(caught.value.trailing_metadata() or ()))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ended
        assert (caught.value.code(), caught.value.details()) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "count must not be negative",
        )
        assert sorted(held.ended) == sorted([COUNT, FAIL, "/grpc.health.v1.Health/Check"])


async def test_in_process_streams_end_with_the_status_the_funnel_set() -> None:
    """In process the same: a stream refused before its first message fails before any
    is given, one failing after some gives them and then fails, never a clean end."""
    registry = HandlerRegistry()
    echo_server.pb_grpc.add_EchoServiceServicer_to_server(FailingCount(), registry)
    chain = InterceptorChain(_stages())
    chain.prepare(registry.handlers)
    upstream = InProcessUpstream(registry.handlers, (chain,))
    with pytest.raises(UpstreamError) as caught:
        await upstream.stream(COUNT, pb.StreamRequest(count=2), pb.Kitchen, metadata=(), timeout=5)
    assert caught.value.status.code == code_pb2.INVALID_ARGUMENT
    assert caught.value.status.message.startswith("X-Stella-Tenant: ")
    stream = await upstream.stream(
        COUNT, pb.StreamRequest(count=2), pb.Kitchen, metadata=(TENANT,), timeout=5
    )
    seen: list[str] = []
    with pytest.raises(UpstreamError) as caught:
        async for item in stream.messages:
            seen.append(item.id)  # type: ignore[attr-defined]
    assert seen == ["0", "1"]
    assert (caught.value.status.code, caught.value.status.message) == (
        code_pb2.FAILED_PRECONDITION,
        "the count ran out",
    )

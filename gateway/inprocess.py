"""Call a grpc.aio server's handlers in-process: no socket, no serialization, the
same interceptor chain.

`HandlerRegistry` stands in for a server when `add_XServicer_to_server` registers
a servicer, so it collects exactly the handlers the real server serves. Each call
runs the real interceptors (`intercept_service`), then the handler's behaviour with
an `InProcessContext` that records metadata and status like grpc.aio's context.

Every kind of method is served: unary and server-streaming ones get the request
message, client- and bidi-streaming ones an async iterator over the requests (the
gateway has parsed them all first), readable with `context.read()` too.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import grpc
from google.protobuf.message import Message
from google.rpc import code_pb2, status_pb2

from gateway.upstream import Metadata, StreamCall, UnaryResult, UpstreamError, status_from

Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]


class HandlerRegistry:
    """Duck-types the registration half of `grpc.aio.Server`."""

    def __init__(self) -> None:
        self.handlers: dict[str, grpc.RpcMethodHandler] = {}

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        for name, handler in method_handlers.items():
            self.handlers[f"/{service_name}/{name}"] = handler

    def add_generic_rpc_handlers(self, generic_rpc_handlers: Iterable[Any]) -> None:
        # Every generated servicer also registers its methods by name (above).
        return None


class _CallDetails(NamedTuple):
    method: str
    invocation_metadata: tuple[tuple[str, str], ...]


class InProcessAbort(grpc.aio.AbortError):  # type: ignore[misc]
    """What `context.abort` raises here, as grpc.aio raises AbortError."""


@dataclass(slots=True)
class InProcessContext:
    """The subset of `grpc.aio.ServicerContext` that servicers and interceptors use."""

    metadata: tuple[tuple[str, str], ...]
    deadline: float | None
    initial: tuple[tuple[str, str | bytes], ...] = ()
    trailing: tuple[tuple[str, str | bytes], ...] = ()
    status_code: grpc.StatusCode | None = None
    status_details: str = ""
    # The request stream of a client- or bidi-streaming call, for `read()`.
    requests: AsyncIterator[Message] | None = None

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata

    async def send_initial_metadata(self, metadata: Sequence[tuple[str, str | bytes]]) -> None:
        self.initial = tuple(metadata)

    def set_trailing_metadata(self, metadata: Sequence[tuple[str, str | bytes]]) -> None:
        self.trailing = tuple(metadata)

    def trailing_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return self.trailing

    def set_code(self, code: grpc.StatusCode) -> None:
        self.status_code = code

    def set_details(self, details: str) -> None:
        self.status_details = details

    def code(self) -> grpc.StatusCode | None:
        return self.status_code

    def details(self) -> str:
        return self.status_details

    async def abort(
        self, code: grpc.StatusCode, details: str = "", trailing_metadata: Metadata = ()
    ) -> None:
        self.status_code, self.status_details = code, details
        if trailing_metadata:
            self.trailing = tuple(trailing_metadata)
        raise InProcessAbort()

    async def read(self) -> Message | grpc.aio.EOFType:
        """The next request of a request stream, or `grpc.aio.EOF` after the last."""
        if self.requests is None:
            raise RuntimeError("read() is for client- and bidi-streaming calls")
        try:
            return await anext(self.requests)
        except StopAsyncIteration:
            return grpc.aio.EOF

    def peer(self) -> str:
        return "inprocess:gateway"

    @property
    def in_process(self) -> bool:
        """Always True: the call never left this process. The server trusts this flag
        (a network caller's context has none), never the peer string above."""
        return True

    def time_remaining(self) -> float | None:
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - asyncio.get_running_loop().time())

    def cancelled(self) -> bool:
        return False

    def done(self) -> bool:
        return False

    def auth_context(self) -> dict[str, Any]:
        return {}

    def error(self) -> UpstreamError:
        code = self.status_code.value[0] if self.status_code is not None else code_pb2.UNKNOWN
        status = status_from(code, self.status_details, self.trailing)
        return UpstreamError(status, headers=self.initial + self.trailing)


class InProcessUpstream:
    def __init__(
        self,
        handlers: dict[str, grpc.RpcMethodHandler],
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    ) -> None:
        self._handlers = handlers

        async def terminal(details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
            return self._handlers.get(details.method)

        chain: Continuation = terminal
        for interceptor in reversed(interceptors):
            chain = functools.partial(interceptor.intercept_service, chain)
        self._resolve = chain

    async def _handler(
        self, method: str, metadata: Sequence[tuple[str, str]], timeout: float | None
    ) -> tuple[grpc.RpcMethodHandler, InProcessContext]:
        md = tuple(metadata)
        handler = await self._resolve(_CallDetails(method, md))
        if handler is None:
            raise UpstreamError(_unimplemented(method))
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        return handler, InProcessContext(md, deadline)

    async def unary(
        self,
        method: str,
        request: Message,
        response_type: type[Message],
        *,
        metadata: Sequence[tuple[str, str]],
        timeout: float | None,
    ) -> UnaryResult:
        handler, context = await self._handler(method, metadata, timeout)
        return await _answer(handler.unary_unary(request, context), context, timeout)

    async def client_stream(
        self,
        method: str,
        requests: Sequence[Message],
        response_type: type[Message],
        *,
        metadata: Sequence[tuple[str, str]],
        timeout: float | None,
    ) -> UnaryResult:
        handler, context = await self._handler(method, metadata, timeout)
        context.requests = _feed(requests)
        return await _answer(handler.stream_unary(context.requests, context), context, timeout)

    async def stream(
        self,
        method: str,
        request: Message,
        response_type: type[Message],
        *,
        metadata: Sequence[tuple[str, str]],
        timeout: float | None,
    ) -> StreamCall:
        handler, context = await self._handler(method, metadata, timeout)
        return await _open(handler.unary_stream(request, context), context, timeout)

    async def bidi_stream(
        self,
        method: str,
        requests: Sequence[Message],
        response_type: type[Message],
        *,
        metadata: Sequence[tuple[str, str]],
        timeout: float | None,
    ) -> StreamCall:
        handler, context = await self._handler(method, metadata, timeout)
        context.requests = _feed(requests)
        return await _open(handler.stream_stream(context.requests, context), context, timeout)

    async def close(self) -> None:
        return None


async def _feed(requests: Sequence[Message]) -> AsyncIterator[Message]:
    for request in requests:
        yield request


async def _answer(
    response: Awaitable[Message], context: InProcessContext, timeout: float | None
) -> UnaryResult:
    """The one response of a unary or client-streaming handler, or its status raised."""
    try:
        async with asyncio.timeout(timeout):
            message = await response
    except InProcessAbort:
        raise context.error() from None
    except TimeoutError:
        raise UpstreamError(_deadline(), headers=context.initial) from None
    if _failed(context):
        raise context.error()
    return UnaryResult(response=message, headers=context.initial, trailers=context.trailing)


async def _open(
    iterator: AsyncIterator[Message], context: InProcessContext, timeout: float | None
) -> StreamCall:
    """A server- or bidi-streaming handler's responses, once the first one (or the end)
    is there: a call that fails at once raises here, before any HTTP is written."""
    first: list[Message] = []
    try:
        async with asyncio.timeout(timeout):
            first.append(await anext(iterator))
    except StopAsyncIteration:
        if _failed(context):
            raise context.error() from None
    except InProcessAbort:
        raise context.error() from None
    except TimeoutError:
        raise UpstreamError(_deadline(), headers=context.initial) from None

    async def messages() -> AsyncIterator[Message]:
        for item in first:
            yield item
        try:
            async with asyncio.timeout(context.time_remaining()):
                async for item in iterator:
                    yield item
            if _failed(context):
                raise context.error()
        except InProcessAbort:
            raise context.error() from None
        except TimeoutError:
            raise UpstreamError(_deadline()) from None
        finally:
            await iterator.aclose()  # type: ignore[attr-defined]

    return StreamCall(headers=context.initial, messages=messages())


def _failed(context: InProcessContext) -> bool:
    """Whether the handler ended by setting a non-OK code (`set_code`), which grpc.aio
    sends as the call's status when the handler returns, as it does an `abort`."""
    return context.status_code not in (None, grpc.StatusCode.OK)


def _unimplemented(method: str) -> status_pb2.Status:
    return status_pb2.Status(code=code_pb2.UNIMPLEMENTED, message=f"method {method} is not served")


def _deadline() -> status_pb2.Status:
    return status_pb2.Status(code=code_pb2.DEADLINE_EXCEEDED, message="deadline exceeded")

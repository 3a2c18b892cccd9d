"""A grpc.aio interceptor that wraps each method's behaviour once, then reuses it.

gRPC asks every interceptor for a handler on every call. Wrapping the behaviour
(rather than acting in `intercept_service`) gives each interceptor the request and
the servicer context, and runs it inside the handler's task so context variables
set here are seen by the servicer. The wrapped handler is cached per method.

Subclasses implement `scope`, an async context manager around the call: code before
its `yield` runs first, exceptions from the inner layers arrive at the `yield`.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import grpc

Behavior = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
StreamBehavior = Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]]
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]


def invocation_value(context: grpc.aio.ServicerContext, key: str) -> str | None:
    """The first value of a (lower-case) metadata key, or None."""
    for item in context.invocation_metadata() or ():
        if item[0] == key:
            value = item[1]
            return value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return None


def invocation_values(context: grpc.aio.ServicerContext, key: str) -> list[str]:
    """Every value of a (lower-case) metadata key, in order: for headers that must be sent
    at most once (Authorization, DPoP)."""
    values = []
    for item in context.invocation_metadata() or ():
        if item[0] == key:
            value = item[1]
            values.append(value.decode("latin-1") if isinstance(value, bytes) else str(value))
    return values


class WrappingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self) -> None:
        self._cache: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def applies(self, method: str) -> bool:
        """Whether `scope` does anything for `method`; a method it never touches is
        served unwrapped, one coroutine frame and context manager less per call."""
        return True

    @abstractmethod
    def scope(
        self, method: str, context: grpc.aio.ServicerContext
    ) -> AbstractAsyncContextManager[None]:
        """What this interceptor does around one call."""

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method: str = handler_call_details.method
        cached = self._cache.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(method, handler) if self.applies(method) else handler
        self._cache[method] = (handler, wrapped)
        return wrapped

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if handler.unary_unary is not None:
            inner: Behavior = handler.unary_unary

            async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                async with self.scope(method, context):
                    return await inner(request, context)

            return grpc.unary_unary_rpc_method_handler(
                unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            stream_inner: StreamBehavior = handler.unary_stream

            async def unary_stream(
                request: Any, context: grpc.aio.ServicerContext
            ) -> AsyncIterator[Any]:
                async with self.scope(method, context):
                    async for item in stream_inner(request, context):
                        yield item

            return grpc.unary_stream_rpc_method_handler(
                unary_stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler  # client- and bidi-streaming methods are not wrapped (none exist yet)

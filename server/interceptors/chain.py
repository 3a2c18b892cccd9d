"""The server's interceptor chain: per method, plain coroutines built once.

gRPC asks every interceptor for a handler on every call; this one interceptor
answers with the method's chain, composed the first time it sees the method's
handler and reused after. A chain is nested plain coroutines, each stage an
`async def` that does its work and awaits the next with the call context it
resolved (`CallContext` flows down as an argument; the servicer reads it from the
context variable the last step sets). Each stage decides per method, from the
policies read at start, whether it has anything to do: a method without
authentication, tenancy or operator audit has no frame for them at all.

Most stages admit a call: they look at its metadata and either refuse it (a
`DomainError`) or pass on an extended call context. `Admission` is that shape;
tracing and error mapping work around the rest of the chain and implement
`Stage` directly. Every kind of method is chained: a client-streaming method as a
unary one and a bidi-streaming one as a server-streaming one, their "request" being
the request iterator, which no stage reads; so authentication, tenancy and the rest
admit a streamed call once, before its first message is read.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, NoReturn, Protocol

import grpc
from google.protobuf.message import DecodeError

from server.domain.context import CallContext, reset_current_call, set_current_call
from server.domain.errors import InvalidArgument

Behavior = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
# A server-streaming handler yields its messages (an async generator) or, as grpc.aio
# also allows, is a coroutine that sends them with `context.write` (grpc_health's Watch).
StreamBehavior = Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any] | Awaitable[None]]
Unary = Callable[[Any, grpc.aio.ServicerContext, CallContext], Awaitable[Any]]
Streaming = Callable[[Any, grpc.aio.ServicerContext, CallContext], AsyncIterator[Any]]
Admit = Callable[[grpc.aio.ServicerContext, CallContext], Awaitable[CallContext]]
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]


class Stage(Protocol):
    """One link: given the method and the rest of its chain, the chain from here on
    (`inner` itself when the stage has nothing to do for the method)."""

    def unary(self, method: str, inner: Unary) -> Unary: ...

    def streaming(self, method: str, inner: Streaming) -> Streaming: ...


class Admission(ABC):
    """A stage that runs before the call: refuse it or extend its context."""

    @abstractmethod
    def admission(self, method: str) -> Admit | None:
        """What this stage does for every call of `method`, or None for nothing."""

    def unary(self, method: str, inner: Unary) -> Unary:
        admit = self.admission(method)
        if admit is None:
            return inner

        async def admitted(
            request: Any, context: grpc.aio.ServicerContext, call: CallContext
        ) -> Any:
            return await inner(request, context, await admit(context, call))

        return admitted

    def streaming(self, method: str, inner: Streaming) -> Streaming:
        admit = self.admission(method)
        if admit is None:
            return inner

        async def admitted(
            request: Any, context: grpc.aio.ServicerContext, call: CallContext
        ) -> AsyncIterator[Any]:
            async for item in inner(request, context, await admit(context, call)):
                yield item

        return admitted


class _Ended(grpc.aio.AbortError):  # type: ignore[misc]
    """What a servicer's `abort` raises here: its status is already set on the call."""


class _DeferredAbort:
    """The call's context as the servicer sees it: everything is the context's own but
    `abort`, which sets the status and ends the handler (the chain's last stage catches
    `_Ended` and returns), where grpc.aio's sends the status at once, before the outer
    stages have recorded the call. So a servicer that is not ours (grpc_health's Check
    of an unknown service) is counted before its caller hears the answer, as a refusal
    of the error funnel is (errors.py)."""

    __slots__ = ("_context",)

    def __init__(self, context: grpc.aio.ServicerContext) -> None:
        self._context = context

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    async def abort(
        self,
        code: grpc.StatusCode,
        details: str = "",
        trailing_metadata: Sequence[tuple[str, str | bytes]] = (),
    ) -> NoReturn:
        # As grpc.aio: aborting with OK is a servicer bug, answered UNKNOWN.
        self._context.set_code(grpc.StatusCode.UNKNOWN if code == grpc.StatusCode.OK else code)
        self._context.set_details(details)
        if trailing_metadata:
            self._context.set_trailing_metadata(tuple(trailing_metadata))
        raise _Ended()


class Undecodable:
    """A request message whose bytes did not parse. grpc.aio answers a deserializer's
    exception with UNKNOWN and the exception's text ("Unexpected <class
    'google.protobuf.message.DecodeError'>: ..."), and logs a traceback, before any
    stage runs. The chain's deserializer returns this instead, and the call is refused
    as INVALID_ARGUMENT (INVALID_MESSAGE) in the product's words once the stages
    (authentication first) admitted it; a streamed one when the handler reads it.
    grpc-go and grpc-java answer INTERNAL here; the bytes are the caller's mistake."""

    def __init__(self, message_type: str, problem: str) -> None:
        self.message_type = message_type
        self.problem = problem

    def error(self) -> InvalidArgument:
        return InvalidArgument(
            f"the request is not a valid {self.message_type} message: {self.problem}",
            reason="INVALID_MESSAGE",
            metadata={"messageType": self.message_type},
        )


def _problem(error: DecodeError) -> str:
    """What upb's DecodeError text says, in words that name no library."""
    text = str(error)
    if "UTF-8" in text:
        return "a string field is not valid UTF-8"
    if "Depth" in text or "depth" in text:
        return "its messages are nested too deeply"
    return "its bytes are not in the protocol buffers wire format"


def _decoding(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None
    descriptor = getattr(getattr(deserializer, "__self__", None), "DESCRIPTOR", None)
    message_type = descriptor.full_name if descriptor is not None else "request"

    def decode(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except DecodeError as error:
            return Undecodable(message_type, _problem(error))

    return decode


def _decoded_unary(behavior: Behavior) -> Behavior:
    async def decoded(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, Undecodable):
            raise request.error()
        return await behavior(request, context)

    return decoded


def _decoded_streaming(behavior: StreamBehavior) -> StreamBehavior:
    def decoded(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, Undecodable):
            return _refused(request)
        return behavior(request, context)

    return decoded


async def _refused(request: Undecodable) -> AsyncIterator[Any]:
    raise request.error()
    yield  # an async generator: the error is raised where the stream is read


async def _decoded_requests(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """A client stream's messages, refused at the first one that did not parse."""
    async for request in requests:
        if isinstance(request, Undecodable):
            raise request.error()
        yield request


def _serve_unary(behavior: Behavior) -> Unary:
    async def serve(request: Any, context: grpc.aio.ServicerContext, call: CallContext) -> Any:
        token = set_current_call(call)
        try:
            return await behavior(request, _DeferredAbort(context))
        except _Ended:
            return None  # the status the servicer aborted with is set on the call
        finally:
            reset_current_call(token)

    return serve


def _serve_streaming(behavior: StreamBehavior) -> Streaming:
    """The call context is set around each step of the handler, not across its yields:
    a stream is resumed, and closed when its client goes away, from whatever task
    consumes it (the in-process gateway's response writer), where a context variable
    set in another task's context cannot be reset."""

    async def serve(
        request: Any, context: grpc.aio.ServicerContext, call: CallContext
    ) -> AsyncIterator[Any]:
        produced = behavior(request, _DeferredAbort(context))
        if not isinstance(produced, AsyncIterator):
            # It writes its own messages (`context.write`) while awaited, in this step
            # of the consumer's task, so the call context spans one task here.
            token = set_current_call(call)
            try:
                await produced
            except _Ended:
                return
            finally:
                reset_current_call(token)
            return
        iterator = produced.__aiter__()
        try:
            while True:
                token = set_current_call(call)
                try:
                    item = await anext(iterator)
                except (StopAsyncIteration, _Ended):
                    return
                finally:
                    reset_current_call(token)
                yield item
        finally:
            closing = getattr(iterator, "aclose", None)
            if closing is not None:
                token = set_current_call(call)
                try:
                    await closing()
                finally:
                    reset_current_call(token)

    return serve


class InterceptorChain(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """The one interceptor of the gRPC server and the in-process gateway."""

    def __init__(self, stages: Sequence[Stage]) -> None:
        self.stages = tuple(stages)
        # Keyed by the handler object: the gRPC server and the in-process registry hold
        # different handlers for one method, and each gets its own chain, built once.
        self._chains: dict[int, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def prepare(self, handlers: Mapping[str, grpc.RpcMethodHandler]) -> None:
        """Build the chains of `handlers` (full method -> handler) now, at start."""
        for method, handler in handlers.items():
            self._chain(method, handler)

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        found = self._chains.get(id(handler))
        if found is not None and found[0] is handler:
            return found[1]
        return self._chain(handler_call_details.method, handler)

    def _chain(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        chained = self._compose(method, handler)
        self._chains[id(handler)] = (handler, chained)
        return chained

    def _compose(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        # The root context every call starts from; tracing replaces it with the call's.
        root = CallContext(method=method, trace_id="")
        if handler.unary_unary is not None:
            unary = _serve_unary(_decoded_unary(handler.unary_unary))
            for stage in reversed(self.stages):
                unary = stage.unary(method, unary)
            first = unary

            async def unary_entry(request: Any, context: grpc.aio.ServicerContext) -> Any:
                return await first(request, context, root)

            return grpc.unary_unary_rpc_method_handler(
                unary_entry,
                request_deserializer=_decoding(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            streaming = _serve_streaming(_decoded_streaming(handler.unary_stream))
            for stage in reversed(self.stages):
                streaming = stage.streaming(method, streaming)
            first_streaming = streaming

            async def stream_entry(
                request: Any, context: grpc.aio.ServicerContext
            ) -> AsyncIterator[Any]:
                async for item in first_streaming(request, context, root):
                    yield item

            return grpc.unary_stream_rpc_method_handler(
                stream_entry,
                request_deserializer=_decoding(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary is not None:
            stream_unary = handler.stream_unary
            collecting = _serve_unary(
                lambda requests, context: stream_unary(_decoded_requests(requests), context)
            )
            for stage in reversed(self.stages):
                collecting = stage.unary(method, collecting)
            first_collecting = collecting

            async def collect_entry(requests: Any, context: grpc.aio.ServicerContext) -> Any:
                return await first_collecting(requests, context, root)

            return grpc.stream_unary_rpc_method_handler(
                collect_entry,
                request_deserializer=_decoding(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is not None:
            stream_stream = handler.stream_stream
            chatting = _serve_streaming(
                lambda requests, context: stream_stream(_decoded_requests(requests), context)
            )
            for stage in reversed(self.stages):
                chatting = stage.streaming(method, chatting)
            first_chatting = chatting

            async def chat_entry(
                requests: Any, context: grpc.aio.ServicerContext
            ) -> AsyncIterator[Any]:
                async for item in first_chatting(requests, context, root):
                    yield item

            return grpc.stream_stream_rpc_method_handler(
                chat_entry,
                request_deserializer=_decoding(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        return handler

"""Where transcoded calls go: a gRPC channel (proxy mode) or the local server
(in-process, see inprocess.py). Both answer the same `Upstream` protocol and raise
`UpstreamError` carrying the full `google.rpc.Status`.

Methods whose requests stream (client streaming, bidirectional) are called through
`RequestStreamUpstream`, which both also answer: the gateway has read and parsed
the whole HTTP body first, so the request stream is a finite sequence of messages,
sent in order; the answer is one message (client streaming) or a stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import grpc
from google.protobuf.message import Message
from google.rpc import code_pb2, status_pb2

from gateway.early_status import keep_server_status

DETAILS_KEY = "grpc-status-details-bin"
Metadata = Sequence[tuple[str, str | bytes]]


@dataclass
class UnaryResult:
    response: Message
    headers: Metadata = ()
    trailers: Metadata = ()


@dataclass
class UpstreamError(Exception):
    status: status_pb2.Status
    headers: Metadata = field(default_factory=tuple)

    def __str__(self) -> str:
        return str(self.status.message)


@dataclass
class StreamCall:
    headers: Metadata
    messages: AsyncIterator[Message]


class Upstream(Protocol):
    async def unary(
        self,
        method: str,
        request: Message,
        response_type: type[Message],
        *,
        metadata: Sequence[tuple[str, str]],
        timeout: float | None,
    ) -> UnaryResult: ...

    async def stream(
        self,
        method: str,
        request: Message,
        response_type: type[Message],
        *,
        metadata: Sequence[tuple[str, str]],
        timeout: float | None,
    ) -> StreamCall: ...

    async def close(self) -> None: ...


@runtime_checkable
class RequestStreamUpstream(Protocol):
    """An upstream that can also send a stream of requests, as both of ours can. A
    Gateway whose upstream cannot answers its client- and bidi-streaming methods 501
    UNIMPLEMENTED (an `Upstream` written before streamed requests still serves the rest)."""

    async def client_stream(
        self,
        method: str,
        requests: Sequence[Message],
        response_type: type[Message],
        *,
        metadata: Sequence[tuple[str, str]],
        timeout: float | None,
    ) -> UnaryResult:
        """Send `requests` in order, then half-close; the one response, or UpstreamError."""
        ...

    async def bidi_stream(
        self,
        method: str,
        requests: Sequence[Message],
        response_type: type[Message],
        *,
        metadata: Sequence[tuple[str, str]],
        timeout: float | None,
    ) -> StreamCall:
        """Send `requests` in order, then half-close; returns once the first response
        (or the end) arrived, as `stream` does, so a call failing at once raises here."""
        ...


def status_from(code: int, message: str, trailers: Metadata) -> status_pb2.Status:
    """The rich status from `grpc-status-details-bin` when present and consistent."""
    for key, value in trailers:
        if key == DETAILS_KEY and isinstance(value, bytes):
            try:
                rich = status_pb2.Status.FromString(value)
            except Exception:
                break
            if rich.code == code:
                return rich
    return status_pb2.Status(code=code, message=message)


class ChannelUpstream:
    """Calls any gRPC server over a channel; method handles are cached per method."""

    def __init__(self, target: str, *, channel: grpc.aio.Channel | None = None) -> None:
        self.target = target
        self._channel = channel or grpc.aio.insecure_channel(target)
        # Multi-callables per (kind, method), kind a grpc.aio.Channel factory's name.
        self._stubs: dict[tuple[str, str], Any] = {}

    def _stub(self, kind: str, method: str, response_type: type[Message]) -> Any:
        stub = self._stubs.get((kind, method))
        if stub is None:
            stub = getattr(self._channel, kind)(
                method,
                request_serializer=_serialize,
                response_deserializer=response_type.FromString,
            )
            self._stubs[(kind, method)] = stub
        return stub

    async def unary(
        self,
        method: str,
        request: Message,
        response_type: type[Message],
        *,
        metadata: Sequence[tuple[str, str]],
        timeout: float | None,
    ) -> UnaryResult:
        stub = self._stub("unary_unary", method, response_type)
        return await _unary_result(stub(request, metadata=tuple(metadata), timeout=timeout))

    async def client_stream(
        self,
        method: str,
        requests: Sequence[Message],
        response_type: type[Message],
        *,
        metadata: Sequence[tuple[str, str]],
        timeout: float | None,
    ) -> UnaryResult:
        stub = self._stub("stream_unary", method, response_type)
        call = stub(iter(requests), metadata=tuple(metadata), timeout=timeout)
        return await _unary_result(keep_server_status(call))

    async def stream(
        self,
        method: str,
        request: Message,
        response_type: type[Message],
        *,
        metadata: Sequence[tuple[str, str]],
        timeout: float | None,
    ) -> StreamCall:
        stub = self._stub("unary_stream", method, response_type)
        return await _stream_call(stub(request, metadata=tuple(metadata), timeout=timeout))

    async def bidi_stream(
        self,
        method: str,
        requests: Sequence[Message],
        response_type: type[Message],
        *,
        metadata: Sequence[tuple[str, str]],
        timeout: float | None,
    ) -> StreamCall:
        stub = self._stub("stream_stream", method, response_type)
        call = stub(iter(requests), metadata=tuple(metadata), timeout=timeout)
        return await _stream_call(keep_server_status(call))

    async def close(self) -> None:
        await self._channel.close()


async def _unary_result(call: Any) -> UnaryResult:
    """Await a call with one response (unary-unary, stream-unary)."""
    try:
        response = await call
        return UnaryResult(
            response=response,
            headers=tuple(await call.initial_metadata() or ()),
            trailers=tuple(await call.trailing_metadata() or ()),
        )
    except grpc.aio.AioRpcError as exc:
        raise _error(exc) from None


async def _stream_call(call: Any) -> StreamCall:
    """Open a call with streamed responses (unary-stream, stream-stream)."""
    iterator = call.__aiter__()
    # Wait for the first message (or the end) before answering HTTP headers, so a
    # call that fails at once is an HTTP error, as in-process, not a 200 stream.
    first: list[Message] = []
    try:
        first.append(await anext(iterator))
    except StopAsyncIteration:
        pass
    except grpc.aio.AioRpcError as exc:
        raise _error(exc) from None
    headers = tuple(await call.initial_metadata() or ())

    async def messages() -> AsyncIterator[Message]:
        try:
            for item in first:
                yield item
            async for item in iterator:
                yield item
        except grpc.aio.AioRpcError as exc:
            raise _error(exc) from None
        finally:
            call.cancel()

    return StreamCall(headers=headers, messages=messages())


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


def _error(exc: grpc.aio.AioRpcError) -> UpstreamError:
    code = exc.code().value[0] if exc.code() is not None else code_pb2.UNKNOWN
    trailers = tuple(exc.trailing_metadata() or ())
    status = status_from(code, exc.details() or "", trailers)
    return UpstreamError(status, headers=tuple(exc.initial_metadata() or ()) + trailers)

"""Where transcoded calls go: a gRPC channel (proxy mode) or the local server
(in-process, see inprocess.py). Both answer the same `Upstream` protocol and raise
`UpstreamError` carrying the full `google.rpc.Status`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
from google.protobuf.message import Message
from google.rpc import code_pb2, status_pb2

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
        self._unary: dict[str, Any] = {}
        self._streams: dict[str, Any] = {}

    async def unary(
        self,
        method: str,
        request: Message,
        response_type: type[Message],
        *,
        metadata: Sequence[tuple[str, str]],
        timeout: float | None,
    ) -> UnaryResult:
        stub = self._unary.get(method)
        if stub is None:
            stub = self._channel.unary_unary(
                method,
                request_serializer=_serialize,
                response_deserializer=response_type.FromString,
            )
            self._unary[method] = stub
        call = stub(request, metadata=tuple(metadata), timeout=timeout)
        try:
            response = await call
            return UnaryResult(
                response=response,
                headers=tuple(await call.initial_metadata() or ()),
                trailers=tuple(await call.trailing_metadata() or ()),
            )
        except grpc.aio.AioRpcError as exc:
            raise _error(exc) from None

    async def stream(
        self,
        method: str,
        request: Message,
        response_type: type[Message],
        *,
        metadata: Sequence[tuple[str, str]],
        timeout: float | None,
    ) -> StreamCall:
        stub = self._streams.get(method)
        if stub is None:
            stub = self._channel.unary_stream(
                method,
                request_serializer=_serialize,
                response_deserializer=response_type.FromString,
            )
            self._streams[method] = stub
        call = stub(request, metadata=tuple(metadata), timeout=timeout)
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

    async def close(self) -> None:
        await self._channel.close()


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


def _error(exc: grpc.aio.AioRpcError) -> UpstreamError:
    code = exc.code().value[0] if exc.code() is not None else code_pb2.UNKNOWN
    trailers = tuple(exc.trailing_metadata() or ())
    status = status_from(code, exc.details() or "", trailers)
    return UpstreamError(status, headers=tuple(exc.initial_metadata() or ()) + trailers)

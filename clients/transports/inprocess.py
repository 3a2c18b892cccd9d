"""In-process transport: for Python code running inside the server process. Calls go
through the same interceptor chain as gRPC and REST, without a socket.

It takes the server's in-process upstream (`gateway.inprocess.InProcessUpstream`,
the one the in-process REST gateway calls), so what a call may do is decided by
the same policy as over the network: it needs the same token and headers.
"""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message

from clients.errors import ApiError
from clients.transports.base import ResponseT, full_method
from gateway.upstream import Upstream, UpstreamError


class InProcessTransport:
    def __init__(self, upstream: Upstream, *, timeout: float | None = 30.0) -> None:
        self._upstream = upstream
        self._timeout = timeout

    async def call(
        self,
        method: MethodDescriptor,
        request: Message,
        response_type: type[ResponseT],
        *,
        headers: Mapping[str, str],
    ) -> ResponseT:
        metadata = [(k.lower(), v) for k, v in headers.items()]
        try:
            result = await self._upstream.unary(
                full_method(method),
                request,
                response_type,
                metadata=metadata,
                timeout=self._timeout,
            )
        except UpstreamError as exc:
            raise ApiError.from_status(exc.status) from None
        if not isinstance(result.response, response_type):
            raise TypeError(f"{full_method(method)} answered {type(result.response).__name__}")
        return result.response

    async def close(self) -> None:
        """The upstream belongs to the server, which closes it."""
        return None

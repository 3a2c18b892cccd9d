"""In-process transport: for Python code running inside the server process. Calls go
through the same interceptor chain as gRPC and REST, without a socket."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message

from clients.errors import ApiError
from clients.transports.base import ResponseT, full_method
from gateway.errors import code_name
from gateway.upstream import Upstream, UpstreamError


class InProcessTransport:
    def __init__(self, upstream: Upstream) -> None:
        self._upstream = upstream

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
                full_method(method), request, response_type, metadata=metadata, timeout=30.0
            )
        except UpstreamError as exc:
            details: list[dict[str, Any]] = [
                json_format.MessageToDict(d) for d in exc.status.details
            ]
            raise ApiError(code_name(exc.status.code), exc.status.message, details) from None
        response: ResponseT = result.response  # type: ignore[assignment]
        return response

    async def close(self) -> None:
        return None

"""gRPC transport: a grpc.aio channel; headers travel as lower-case metadata."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from google.rpc import code_pb2, status_pb2

from clients.errors import ApiError
from clients.transports.base import ResponseT, full_method


class GrpcTransport:
    def __init__(self, target: str, *, timeout: float | None = 30.0) -> None:
        self._channel = grpc.aio.insecure_channel(target)
        self._timeout = timeout
        self._stubs: dict[str, Any] = {}

    async def call(
        self,
        method: MethodDescriptor,
        request: Message,
        response_type: type[ResponseT],
        *,
        headers: Mapping[str, str],
    ) -> ResponseT:
        name = full_method(method)
        stub = self._stubs.get(name)
        if stub is None:
            stub = self._channel.unary_unary(
                name,
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=response_type.FromString,
            )
            self._stubs[name] = stub
        metadata = tuple((k.lower(), v) for k, v in headers.items())
        try:
            response: ResponseT = await stub(request, metadata=metadata, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise _api_error(exc) from None
        return response

    async def close(self) -> None:
        await self._channel.close()


def _api_error(exc: grpc.aio.AioRpcError) -> ApiError:
    details: list[dict[str, Any]] = []
    for key, value in exc.trailing_metadata() or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            details = [json_format.MessageToDict(d) for d in status.details]
    code = exc.code()
    return ApiError(
        code=code.name if code is not None else code_pb2.Code.Name(code_pb2.UNKNOWN),
        message=exc.details() or "",
        details=details,
    )

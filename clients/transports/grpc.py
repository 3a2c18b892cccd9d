"""gRPC transport: a grpc.aio channel; headers travel as lower-case metadata."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from google.rpc import code_pb2, status_pb2

from clients.errors import ApiError
from clients.transports.base import ResponseT, full_method

DETAILS_KEY = "grpc-status-details-bin"


# Answers of any size: gRPC's default cap on a received message is 4 MiB, and a
# LeaseJobs answer of a dozen jobs with 64 KB JSON payloads (numbers grow ~5x as
# google.protobuf.Value) passed it. The leases were already taken, so the refused
# answer lost them: each job waited for its lease to expire, again at every retry,
# until it was dead-lettered without having run. The caller trusts its server.
CHANNEL_OPTIONS = (("grpc.max_receive_message_length", -1),)


class GrpcTransport:
    def __init__(self, target: str, *, timeout: float | None = 30.0) -> None:
        self._channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
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
            raise ApiError.from_status(_status(exc)) from None
        return response

    async def close(self) -> None:
        await self._channel.close()


def _status(exc: grpc.aio.AioRpcError) -> status_pb2.Status:
    """The rich status from the trailers when it agrees with the call's code, else the
    bare code and message."""
    code = exc.code()
    number = code.value[0] if code is not None else code_pb2.UNKNOWN
    for key, value in exc.trailing_metadata() or ():
        if key == DETAILS_KEY and isinstance(value, bytes):
            rich = status_pb2.Status.FromString(value)
            if rich.code == number:
                return rich
    return status_pb2.Status(code=number, message=exc.details() or "")

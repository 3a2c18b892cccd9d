"""The transport contract: call one method with one request and some headers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, TypeVar

from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message

ResponseT = TypeVar("ResponseT", bound=Message)


class Transport(Protocol):
    async def call(
        self,
        method: MethodDescriptor,
        request: Message,
        response_type: type[ResponseT],
        *,
        headers: Mapping[str, str],
    ) -> ResponseT: ...

    async def close(self) -> None: ...


def full_method(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"

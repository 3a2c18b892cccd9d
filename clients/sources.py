"""Job sources for Python callers, over any transport."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TypeVar

from google.protobuf.message import Message

from clients.auth import ClientCredentials
from clients.transports.base import Transport
from orchestrator.jobengine.v1 import source_pb2
from orchestrator.jobengine.v1 import sources_service_pb2 as pb

R = TypeVar("R", bound=Message)
_SERVICE = pb.DESCRIPTOR.services_by_name["SourcesService"]


@dataclass
class CallerHeaders:
    """The headers every call of one caller carries (DESIGN.md §4.1)."""

    tenant: str | None = None
    access_token: str | None = None  # sent as `Authorization: Bearer`
    project: str | None = None
    operator_reason: str | None = None
    operator_ticket: str | None = None
    trace_id: str | None = None

    def as_dict(self) -> dict[str, str]:
        pairs = {
            "Authorization": f"Bearer {self.access_token}" if self.access_token else None,
            "X-Stella-Tenant": self.tenant,
            "X-Stella-Project": self.project,
            "X-Stella-Operator-Reason": self.operator_reason,
            "X-Stella-Operator-Ticket": self.operator_ticket,
            "X-Stella-Trace-Id": self.trace_id,
        }
        return {k: v for k, v in pairs.items() if v is not None}


class SourcesClient:
    def __init__(
        self,
        transport: Transport,
        headers: CallerHeaders | None = None,
        *,
        credentials: ClientCredentials | None = None,
    ) -> None:
        """`credentials` fetch and refresh the token; `headers.access_token` is for a
        token obtained elsewhere. With neither, calls are anonymous (and refused)."""
        self.transport = transport
        self.headers = headers or CallerHeaders()
        self.credentials = credentials

    async def list_sources(
        self,
        *,
        source_type: str = "",
        enabled: bool | None = None,
        limit: int = 0,
        continuation_token: str = "",
    ) -> pb.ListSourcesResponse:
        request = pb.ListSourcesRequest(
            source_type=source_type, limit=limit, continuation_token=continuation_token
        )
        if enabled is not None:
            request.enabled = enabled
        return await self._call("ListSources", request, pb.ListSourcesResponse)

    async def iter_sources(
        self, *, source_type: str = "", enabled: bool | None = None, limit: int = 0
    ) -> AsyncIterator[source_pb2.Source]:
        """Every matching source, following continuation tokens page by page."""
        token = ""
        while True:
            page = await self.list_sources(
                source_type=source_type, enabled=enabled, limit=limit, continuation_token=token
            )
            for item in page.items:
                yield item
            if not page.HasField("continuation_token"):
                return
            token = page.continuation_token

    async def get_source(self, source_id: str) -> source_pb2.Source:
        response = await self._call(
            "GetSource", pb.GetSourceRequest(source_id=source_id), pb.GetSourceResponse
        )
        return response.source

    async def register_source(
        self, name: str, source_type: str, *, enabled: bool | None = None
    ) -> source_pb2.Source:
        request = pb.RegisterSourceRequest(name=name, source_type=source_type)
        if enabled is not None:
            request.enabled = enabled
        response = await self._call("RegisterSource", request, pb.RegisterSourceResponse)
        return response.source

    async def pause_source(self, source_id: str) -> source_pb2.Source:
        request = pb.PauseSourceRequest(source_id=source_id)
        return (await self._call("PauseSource", request, pb.PauseSourceResponse)).source

    async def resume_source(self, source_id: str) -> source_pb2.Source:
        request = pb.ResumeSourceRequest(source_id=source_id)
        return (await self._call("ResumeSource", request, pb.ResumeSourceResponse)).source

    async def _call(self, name: str, request: Message, response_type: type[R]) -> R:
        method = _SERVICE.methods_by_name[name]
        headers = self.headers.as_dict()
        if self.credentials is not None:
            headers["Authorization"] = await self.credentials.authorization()
        return await self.transport.call(method, request, response_type, headers=headers)

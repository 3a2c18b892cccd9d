"""Job sources for Python callers, over any transport (DESIGN.md §4.1 `/sources`)."""

from __future__ import annotations

from clients.base import Pager, ServiceClient
from orchestrator.jobengine.v1 import source_pb2
from orchestrator.jobengine.v1 import sources_service_pb2 as pb

SourcePager = Pager[pb.ListSourcesRequest, pb.ListSourcesResponse, source_pb2.Source]


class SourcesClient(ServiceClient):
    service = pb.DESCRIPTOR.services_by_name["SourcesService"]

    async def list_sources(
        self,
        *,
        source_type: str = "",
        enabled: bool | None = None,
        limit: int = 0,
        continuation_token: str = "",
    ) -> pb.ListSourcesResponse:
        """One page, ordered by (name, sourceId); `limit` 0 means the server's default."""
        request = _list_request(source_type, enabled, limit)
        request.continuation_token = continuation_token
        return await self._list(request)

    def iter_sources(
        self, *, source_type: str = "", enabled: bool | None = None, limit: int = 0
    ) -> SourcePager:
        """Every matching source, following continuation tokens page by page
        (`limit` is the page size)."""
        return Pager(self._list, _list_request(source_type, enabled, limit), _source_items)

    async def get_source(self, source_id: str) -> source_pb2.Source:
        response = await self.call(
            "GetSource", pb.GetSourceRequest(source_id=source_id), pb.GetSourceResponse
        )
        return response.source

    async def register_source(
        self, name: str, source_type: str, *, enabled: bool | None = None
    ) -> source_pb2.Source:
        request = pb.RegisterSourceRequest(name=name, source_type=source_type)
        if enabled is not None:
            request.enabled = enabled
        response = await self.call("RegisterSource", request, pb.RegisterSourceResponse)
        return response.source

    async def pause_source(self, source_id: str) -> source_pb2.Source:
        request = pb.PauseSourceRequest(source_id=source_id)
        return (await self.call("PauseSource", request, pb.PauseSourceResponse)).source

    async def resume_source(self, source_id: str) -> source_pb2.Source:
        request = pb.ResumeSourceRequest(source_id=source_id)
        return (await self.call("ResumeSource", request, pb.ResumeSourceResponse)).source

    async def _list(self, request: pb.ListSourcesRequest) -> pb.ListSourcesResponse:
        return await self.call("ListSources", request, pb.ListSourcesResponse)


def _list_request(source_type: str, enabled: bool | None, limit: int) -> pb.ListSourcesRequest:
    request = pb.ListSourcesRequest(source_type=source_type, limit=limit)
    if enabled is not None:
        request.enabled = enabled
    return request


def _source_items(page: pb.ListSourcesResponse) -> list[source_pb2.Source]:
    return list(page.items)

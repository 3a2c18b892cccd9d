"""SourcesService: read the request, call the domain, convert the result."""

from __future__ import annotations

import grpc

from orchestrator.jobengine.v1 import sources_service_pb2 as pb
from orchestrator.jobengine.v1 import sources_service_pb2_grpc as pb_grpc
from server.domain import sources
from server.domain.context import current_call
from server.domain.pagination import PageTokens
from server.domain.units import Store
from server.services import convert


class SourcesService(pb_grpc.SourcesServiceServicer):
    def __init__(self, store: Store, tokens: PageTokens) -> None:
        self._store = store
        self._tokens = tokens

    async def ListSources(
        self, request: pb.ListSourcesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListSourcesResponse:
        page = await sources.list_sources(
            self._store,
            self._tokens,
            current_call(),
            source_type=request.source_type,
            enabled=request.enabled if request.HasField("enabled") else None,
            limit=request.limit,
            continuation_token=request.continuation_token,
        )
        response = pb.ListSourcesResponse(items=[convert.source(row) for row in page.items])
        if page.continuation_token is not None:
            response.continuation_token = page.continuation_token
        return response

    async def GetSource(
        self, request: pb.GetSourceRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetSourceResponse:
        row = await sources.get_source(self._store, current_call(), source_id=request.source_id)
        return pb.GetSourceResponse(source=convert.source(row))

    async def RegisterSource(
        self, request: pb.RegisterSourceRequest, context: grpc.aio.ServicerContext
    ) -> pb.RegisterSourceResponse:
        row = await sources.register_source(
            self._store,
            current_call(),
            name=request.name,
            source_type=request.source_type,
            enabled=request.enabled if request.HasField("enabled") else True,
        )
        return pb.RegisterSourceResponse(source=convert.source(row))

    async def PauseSource(
        self, request: pb.PauseSourceRequest, context: grpc.aio.ServicerContext
    ) -> pb.PauseSourceResponse:
        row = await sources.set_paused(
            self._store, current_call(), source_id=request.source_id, paused=True
        )
        return pb.PauseSourceResponse(source=convert.source(row))

    async def ResumeSource(
        self, request: pb.ResumeSourceRequest, context: grpc.aio.ServicerContext
    ) -> pb.ResumeSourceResponse:
        row = await sources.set_paused(
            self._store, current_call(), source_id=request.source_id, paused=False
        )
        return pb.ResumeSourceResponse(source=convert.source(row))

"""AuditService: read the request, call the domain, convert the result."""

from __future__ import annotations

import grpc

from orchestrator.jobengine.v1 import audit_service_pb2 as pb
from orchestrator.jobengine.v1 import audit_service_pb2_grpc as pb_grpc
from server.domain import audit
from server.domain.context import current_call
from server.domain.pagination import PageTokens
from server.domain.units import Store
from server.services import convert


class AuditService(pb_grpc.AuditServiceServicer):
    def __init__(self, store: Store, tokens: PageTokens) -> None:
        self._store = store
        self._tokens = tokens

    async def ListAuditEntries(
        self, request: pb.ListAuditEntriesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListAuditEntriesResponse:
        since = request.since if request.HasField("since") else None
        until = request.until if request.HasField("until") else None
        page = await audit.list_audit_entries(
            self._store,
            self._tokens,
            current_call(),
            action=request.action,
            actor=request.actor,
            resource=request.resource,
            trace_id=request.trace_id,
            since=convert.datetime_of(since, field="since") if since is not None else None,
            until=convert.datetime_of(until, field="until") if until is not None else None,
            limit=request.limit,
            continuation_token=request.continuation_token,
        )
        response = pb.ListAuditEntriesResponse(items=[convert.audit_entry(r) for r in page.items])
        if page.continuation_token is not None:
            response.continuation_token = page.continuation_token
        return response

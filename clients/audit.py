"""The operator audit log for Python callers, over any transport (DESIGN.md §4.1
`GET /audit`): the caller's tenant's entries, newest first (scope `orch:operate`)."""

from __future__ import annotations

from datetime import datetime

from clients.base import Pager, ServiceClient
from orchestrator.jobengine.v1 import audit_pb2
from orchestrator.jobengine.v1 import audit_service_pb2 as pb

AuditPager = Pager[pb.ListAuditEntriesRequest, pb.ListAuditEntriesResponse, audit_pb2.AuditEntry]


class AuditClient(ServiceClient):
    service = pb.DESCRIPTOR.services_by_name["AuditService"]

    async def list_audit_entries(
        self,
        *,
        action: str = "",
        actor: str = "",
        resource: str = "",
        trace_id: str = "",
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 0,
        continuation_token: str = "",
    ) -> pb.ListAuditEntriesResponse:
        """One page ordered by (createdAt, entryId) descending. Empty filters match
        anything; `since` is inclusive, `until` exclusive (aware datetimes)."""
        request = _list_request(action, actor, resource, trace_id, since, until, limit)
        request.continuation_token = continuation_token
        return await self._list(request)

    def iter_audit_entries(
        self,
        *,
        action: str = "",
        actor: str = "",
        resource: str = "",
        trace_id: str = "",
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 0,
    ) -> AuditPager:
        """Every matching entry, newest first, following continuation tokens
        (`limit` is the page size)."""
        request = _list_request(action, actor, resource, trace_id, since, until, limit)
        return Pager(self._list, request, _entry_items)

    async def _list(self, request: pb.ListAuditEntriesRequest) -> pb.ListAuditEntriesResponse:
        return await self.call("ListAuditEntries", request, pb.ListAuditEntriesResponse)


def _list_request(
    action: str,
    actor: str,
    resource: str,
    trace_id: str,
    since: datetime | None,
    until: datetime | None,
    limit: int,
) -> pb.ListAuditEntriesRequest:
    request = pb.ListAuditEntriesRequest(
        action=action, actor=actor, resource=resource, trace_id=trace_id, limit=limit
    )
    if since is not None:
        request.since.FromDatetime(since)
    if until is not None:
        request.until.FromDatetime(until)
    return request


def _entry_items(page: pb.ListAuditEntriesResponse) -> list[audit_pb2.AuditEntry]:
    return list(page.items)

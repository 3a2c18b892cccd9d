"""A typed client of QuotasService over any transport, for tests (DESIGN §4.1 `/quotas`).

Tests that need a quota (leasing under a cap, the summary) create it through the real
API with this, over gRPC, REST or in-process alike.
"""

from __future__ import annotations

from clients.base import Pager, ServiceClient
from orchestrator.jobengine.v1 import quota_pb2
from orchestrator.jobengine.v1 import quotas_service_pb2 as pb

QuotaPager = Pager[pb.ListQuotasRequest, pb.ListQuotasResponse, quota_pb2.Quota]


def _list_request(job_type: str, paused: bool | None, limit: int) -> pb.ListQuotasRequest:
    request = pb.ListQuotasRequest(job_type=job_type, limit=limit)
    if paused is not None:
        request.paused = paused
    return request


class QuotasClient(ServiceClient):
    service = pb.DESCRIPTOR.services_by_name["QuotasService"]

    async def list_quotas(
        self,
        *,
        job_type: str = "",
        paused: bool | None = None,
        limit: int = 0,
        continuation_token: str = "",
    ) -> pb.ListQuotasResponse:
        request = _list_request(job_type, paused, limit)
        request.continuation_token = continuation_token
        return await self._list(request)

    def iter_quotas(
        self, *, job_type: str = "", paused: bool | None = None, limit: int = 0
    ) -> QuotaPager:
        return Pager(self._list, _list_request(job_type, paused, limit), lambda p: list(p.items))

    async def get_quota(self, quota_id: str) -> quota_pb2.Quota:
        request = pb.GetQuotaRequest(quota_id=quota_id)
        return (await self.call("GetQuota", request, pb.GetQuotaResponse)).quota

    async def create_quota(
        self,
        job_type: str,
        *,
        max_active: int = 0,
        max_per_hour: int = 0,
        burst: int = 1,
        refill_per_second: float = 0.0,
    ) -> quota_pb2.Quota:
        quota = quota_pb2.Quota(
            job_type=job_type,
            max_active=max_active,
            max_per_hour=max_per_hour,
            burst=burst,
            refill_per_second=refill_per_second,
        )
        request = pb.CreateQuotaRequest(quota=quota)
        return (await self.call("CreateQuota", request, pb.CreateQuotaResponse)).quota

    async def update_quota(self, quota: quota_pb2.Quota) -> quota_pb2.Quota:
        request = pb.UpdateQuotaRequest(quota=quota)
        return (await self.call("UpdateQuota", request, pb.UpdateQuotaResponse)).quota

    async def delete_quota(self, quota_id: str, *, etag: str = "") -> None:
        request = pb.DeleteQuotaRequest(quota_id=quota_id, etag=etag)
        await self.call("DeleteQuota", request, pb.DeleteQuotaResponse)

    async def pause_quota(self, quota_id: str, reason: str = "") -> quota_pb2.Quota:
        request = pb.PauseQuotaRequest(quota_id=quota_id, reason=reason)
        return (await self.call("PauseQuota", request, pb.PauseQuotaResponse)).quota

    async def resume_quota(self, quota_id: str) -> quota_pb2.Quota:
        request = pb.ResumeQuotaRequest(quota_id=quota_id)
        return (await self.call("ResumeQuota", request, pb.ResumeQuotaResponse)).quota

    async def summary(self) -> pb.GetQuotaSummaryResponse:
        request = pb.GetQuotaSummaryRequest()
        return await self.call("GetQuotaSummary", request, pb.GetQuotaSummaryResponse)

    async def _list(self, request: pb.ListQuotasRequest) -> pb.ListQuotasResponse:
        return await self.call("ListQuotas", request, pb.ListQuotasResponse)

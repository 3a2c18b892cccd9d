"""QuotasService: read the request, call the domain (`server/domain/quotas.py`), convert
the result. Policy (orch:quota, tenancy, operator reason) and HTTP behaviour (201,
204, ETag, If-Match, Cache-Control) come from the proto options, not from here."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import grpc

from orchestrator.jobengine.v1 import quota_pb2
from orchestrator.jobengine.v1 import quotas_service_pb2 as pb
from orchestrator.jobengine.v1 import quotas_service_pb2_grpc as pb_grpc
from server.config import Settings
from server.domain import quotas
from server.domain.context import current_call
from server.domain.pagination import PageTokens
from server.domain.quotas import QuotaLimits, QuotaPolicy, QuotaView
from server.domain.units import Store
from server.services.convert import timestamp


def policy_of(settings: Settings) -> QuotaPolicy:
    """The configured maxima (QUOTA_*_MAX)."""
    return QuotaPolicy(
        max_active=settings.quota_max_active_max,
        max_per_hour=settings.quota_max_per_hour_max,
        burst=settings.quota_burst_max,
        refill_per_second=settings.quota_refill_per_second_max,
    )


def quota_message(view: QuotaView) -> quota_pb2.Quota:
    row = view.quota
    message = quota_pb2.Quota(
        quota_id=row.quota_id,
        job_type=row.job_type,
        max_active=row.max_active,
        max_per_hour=row.max_per_hour,
        burst=row.burst,
        refill_per_second=row.refill_per_second,
        paused=row.paused,
        usage=quota_pb2.QuotaUsage(
            active=view.usage.active, tokens=view.usage.tokens, last_hour=view.usage.last_hour
        ),
        created_at=timestamp(row.created_at),
        updated_at=timestamp(row.updated_at),
        updated_by=row.updated_by,
        etag=view.etag,
    )
    if row.pause_reason is not None:
        message.pause_reason = row.pause_reason
    return message


def _limits(quota: quota_pb2.Quota) -> QuotaLimits:
    return QuotaLimits(
        max_active=quota.max_active,
        max_per_hour=quota.max_per_hour,
        burst=quota.burst,
        refill_per_second=quota.refill_per_second,
    )


class QuotasService(pb_grpc.QuotasServiceServicer):
    def __init__(
        self, store: Store, tokens: PageTokens, policy: QuotaPolicy, wall: Callable[[], float]
    ) -> None:
        """`wall`: the process's clock, seconds since the epoch (tests move it)."""
        self._store = store
        self._tokens = tokens
        self._policy = policy
        self._wall = wall

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._wall(), UTC)

    async def ListQuotas(
        self, request: pb.ListQuotasRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListQuotasResponse:
        page = await quotas.list_quotas(
            self._store,
            self._tokens,
            current_call(),
            job_type=request.job_type,
            paused=request.paused if request.HasField("paused") else None,
            limit=request.limit,
            continuation_token=request.continuation_token,
            now=self._now(),
        )
        response = pb.ListQuotasResponse(items=[quota_message(view) for view in page.items])
        if page.continuation_token is not None:
            response.continuation_token = page.continuation_token
        return response

    async def GetQuotaSummary(
        self, request: pb.GetQuotaSummaryRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetQuotaSummaryResponse:
        summary = await quotas.quota_summary(self._store, current_call(), now=self._now())
        totals = summary.totals
        return pb.GetQuotaSummaryResponse(
            quotas=[
                pb.QuotaSummary(
                    quota_id=line.view.quota.quota_id,
                    job_type=line.view.quota.job_type,
                    paused=line.view.quota.paused,
                    active=line.view.usage.active,
                    max_active=line.view.quota.max_active,
                    tokens=line.view.usage.tokens,
                    burst=line.view.quota.burst,
                    last_hour=line.view.usage.last_hour,
                    max_per_hour=line.view.quota.max_per_hour,
                    throttled_jobs=line.throttled_jobs,
                    backpressure=line.backpressure,
                )
                for line in summary.lines
            ],
            totals=pb.QuotaSummaryTotals(
                quotas=totals.quotas,
                paused=totals.paused,
                backpressured=totals.backpressured,
                active=totals.active,
                last_hour=totals.last_hour,
                throttled_jobs=totals.throttled_jobs,
            ),
            generated_at=timestamp(summary.generated_at),
        )

    async def GetQuota(
        self, request: pb.GetQuotaRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetQuotaResponse:
        view = await quotas.get_quota(
            self._store, current_call(), quota_id=request.quota_id, now=self._now()
        )
        return pb.GetQuotaResponse(quota=quota_message(view))

    async def CreateQuota(
        self, request: pb.CreateQuotaRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateQuotaResponse:
        view = await quotas.create_quota(
            self._store,
            current_call(),
            policy=self._policy,
            job_type=request.quota.job_type,
            limits=_limits(request.quota),
            now=self._now(),
        )
        return pb.CreateQuotaResponse(quota=quota_message(view))

    async def UpdateQuota(
        self, request: pb.UpdateQuotaRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateQuotaResponse:
        view = await quotas.update_quota(
            self._store,
            current_call(),
            policy=self._policy,
            quota_id=request.quota.quota_id,
            job_type=request.quota.job_type,
            limits=_limits(request.quota),
            etag=request.quota.etag,
            now=self._now(),
        )
        return pb.UpdateQuotaResponse(quota=quota_message(view))

    async def DeleteQuota(
        self, request: pb.DeleteQuotaRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteQuotaResponse:
        await quotas.delete_quota(
            self._store,
            current_call(),
            quota_id=request.quota_id,
            etag=request.etag,
            now=self._now(),
        )
        return pb.DeleteQuotaResponse()

    async def PauseQuota(
        self, request: pb.PauseQuotaRequest, context: grpc.aio.ServicerContext
    ) -> pb.PauseQuotaResponse:
        view = await quotas.set_paused(
            self._store,
            current_call(),
            quota_id=request.quota_id,
            paused=True,
            reason=request.reason,
            etag=request.etag,
            now=self._now(),
        )
        return pb.PauseQuotaResponse(quota=quota_message(view))

    async def ResumeQuota(
        self, request: pb.ResumeQuotaRequest, context: grpc.aio.ServicerContext
    ) -> pb.ResumeQuotaResponse:
        view = await quotas.set_paused(
            self._store,
            current_call(),
            quota_id=request.quota_id,
            paused=False,
            etag=request.etag,
            now=self._now(),
        )
        return pb.ResumeQuotaResponse(quota=quota_message(view))

"""CrossServiceJobsService: read the request, enqueue through
`server/domain/cross_service_jobs.py`, answer the job (issue 13 point 5). Times come
from the process clock (`Components.clocks.wall`), the one leasing compares with."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc

from orchestrator.mesh.v1 import cross_service_jobs_service_pb2 as pb
from orchestrator.mesh.v1 import cross_service_jobs_service_pb2_grpc as pb_grpc
from server.domain import cross_service_jobs as domain
from server.domain.context import current_call
from server.domain.jobs import JobLimits
from server.domain.units import Store
from server.identity.components import Clocks


class CrossServiceJobsService(pb_grpc.CrossServiceJobsServiceServicer):
    def __init__(self, store: Store, limits: JobLimits, clocks: Clocks) -> None:
        self._store = store
        self._limits = limits
        self._clocks = clocks

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clocks.wall(), UTC)

    async def RecalcQuality(
        self, request: pb.RecalcQualityRequest, context: grpc.aio.ServicerContext
    ) -> pb.RecalcQualityResponse:
        call = current_call()
        accepted = await domain.recalc_quality(
            self._store,
            call,
            domain.RecalcQuality(
                scope=request.scope,
                document_ids=tuple(request.document_ids),
                correlation_id=request.correlation_id,
                idempotency_key=request.idempotency_key,
                priority=request.priority,
            ),
            self._limits,
            now=self._now(),
        )
        return pb.RecalcQualityResponse(
            job_id=accepted.job.job_id,
            job_type=accepted.job.job_type,
            status=accepted.job.status,
            trace_id=accepted.job.trace_id or call.trace_id,  # the job's trace
            created=accepted.created,
            source_id=accepted.source_id,
        )

    async def NotifyConsolidation(
        self, request: pb.NotifyConsolidationRequest, context: grpc.aio.ServicerContext
    ) -> pb.NotifyConsolidationResponse:
        call = current_call()
        accepted = await domain.notify_consolidation(
            self._store,
            call,
            domain.NotifyConsolidation(
                scope=request.scope,
                document_ids=tuple(request.document_ids),
                message=request.message,
                channels=tuple(request.channels),
                correlation_id=request.correlation_id,
                idempotency_key=request.idempotency_key,
                priority=request.priority,
            ),
            self._limits,
            now=self._now(),
        )
        return pb.NotifyConsolidationResponse(
            job_id=accepted.job.job_id,
            job_type=accepted.job.job_type,
            status=accepted.job.status,
            trace_id=accepted.job.trace_id or call.trace_id,  # the job's trace
            created=accepted.created,
            source_id=accepted.source_id,
        )

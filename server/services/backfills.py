"""BackfillsService: read the request, call the domain (`server/domain/backfills.py`),
convert the result. Times come from the process clock (`Components.clocks.wall`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
from google.protobuf import duration_pb2

from orchestrator.jobengine.v1 import backfill_pb2
from orchestrator.jobengine.v1 import backfills_service_pb2 as pb
from orchestrator.jobengine.v1 import backfills_service_pb2_grpc as pb_grpc
from server.config import Settings
from server.domain import backfills
from server.domain.backfills import BackfillLimits, BackfillRequest, BackfillView
from server.domain.context import current_call
from server.domain.jobs import JobLimits
from server.domain.pagination import PageTokens
from server.domain.units import Store
from server.identity.components import Clocks
from server.services import convert


def limits_of(settings: Settings) -> BackfillLimits:
    """The BACKFILL_* settings as the domain's limits."""
    return BackfillLimits(
        max_window_s=settings.backfill_max_window_seconds,
        slice_s=settings.backfill_slice_seconds,
        max_jobs=settings.backfill_max_jobs,
        suppression_s=settings.backfill_suppression_seconds,
    )


def backfill(found: BackfillView) -> backfill_pb2.Backfill:
    """A backfill with its status and progress as the API's `Backfill`."""
    row, progress = found.backfill, found.progress
    counts = progress.by_status
    message = backfill_pb2.Backfill(
        backfill_id=row.backfill_id,
        source_id=row.source_id,
        job_type=row.job_type,
        window_start=convert.timestamp(row.window_start),
        window_end=convert.timestamp(row.window_end),
        reason=row.reason,
        ticket=row.ticket or "",
        status=found.status,
        progress=backfill_pb2.BackfillProgress(
            total=progress.total,
            created=progress.created,
            existing=progress.existing,
            queued=counts["queued"],
            throttled=counts["throttled"],
            leased=counts["leased"],
            failed=counts["failed"],
            succeeded=counts["succeeded"],
            canceled=counts["canceled"],
            dead_lettered=counts["dead_lettered"],
            pruned=progress.pruned,
        ),
        created_by=row.created_by,
        created_at=convert.timestamp(row.created_at),
        updated_at=convert.timestamp(row.updated_at),
    )
    if row.slice_s is not None:
        duration = duration_pb2.Duration()
        duration.FromTimedelta(timedelta(seconds=row.slice_s))
        message.slice.CopyFrom(duration)
    if found.finished_at is not None:
        message.finished_at.CopyFrom(convert.timestamp(found.finished_at))
    return message


class BackfillsService(pb_grpc.BackfillsServiceServicer):
    def __init__(
        self,
        store: Store,
        tokens: PageTokens,
        limits: BackfillLimits,
        job_limits: JobLimits,
        clocks: Clocks,
    ) -> None:
        self._store = store
        self._tokens = tokens
        self._limits = limits
        self._job_limits = job_limits
        self._clocks = clocks

    @classmethod
    def of(
        cls, store: Store, tokens: PageTokens, settings: Settings, clocks: Clocks
    ) -> BackfillsService:
        """The service of a server, from its settings (BACKFILL_*, JOB_PAYLOAD_MAX_BYTES)."""
        job_limits = JobLimits(payload_max_bytes=settings.job_payload_max_bytes)
        return cls(store, tokens, limits_of(settings), job_limits, clocks)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clocks.wall(), UTC)

    async def CreateBackfill(
        self, request: pb.CreateBackfillRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateBackfillResponse:
        asked = BackfillRequest(
            source_id=request.source_id,
            job_type=request.job_type,
            window_start=convert.datetime_of(request.window_start, field="windowStart")
            if request.HasField("window_start")
            else None,
            window_end=convert.datetime_of(request.window_end, field="windowEnd")
            if request.HasField("window_end")
            else None,
            reason=request.reason,
            ticket=request.ticket,
        )
        found = await backfills.create_backfill(
            self._store, current_call(), asked, self._limits, self._job_limits, now=self._now()
        )
        return pb.CreateBackfillResponse(backfill=backfill(found))

    async def ListBackfills(
        self, request: pb.ListBackfillsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListBackfillsResponse:
        page = await backfills.list_backfills(
            self._store,
            self._tokens,
            current_call(),
            source_id=request.source_id,
            job_type=request.job_type,
            limit=request.limit,
            continuation_token=request.continuation_token,
        )
        response = pb.ListBackfillsResponse(items=[backfill(item) for item in page.items])
        if page.continuation_token is not None:
            response.continuation_token = page.continuation_token
        return response

    async def GetBackfill(
        self, request: pb.GetBackfillRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetBackfillResponse:
        found = await backfills.get_backfill(
            self._store, current_call(), backfill_id=request.backfill_id
        )
        return pb.GetBackfillResponse(backfill=backfill(found))

    async def CancelBackfill(
        self, request: pb.CancelBackfillRequest, context: grpc.aio.ServicerContext
    ) -> pb.CancelBackfillResponse:
        found = await backfills.cancel_backfill(
            self._store, current_call(), backfill_id=request.backfill_id, now=self._now()
        )
        return pb.CancelBackfillResponse(backfill=backfill(found))

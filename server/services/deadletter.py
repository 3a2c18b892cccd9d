"""DeadLetterService: read the request, call the domain (`server/domain/deadletter.py`),
convert the result. Policy (orch:operate reads, orch:backfill audited replays,
tenancy) and HTTP behaviour (ETag, 304, Cache-Control, legacy prefix) come from the
proto options, not from here. Times come from the process clock
(`Components.clocks.wall`), the one leasing uses."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

import grpc
from google.protobuf import duration_pb2

from orchestrator.jobengine.v1 import deadletter_pb2
from orchestrator.jobengine.v1 import deadletter_service_pb2 as pb
from orchestrator.jobengine.v1 import deadletter_service_pb2_grpc as pb_grpc
from server.domain import deadletter
from server.domain.context import current_call
from server.domain.deadletter import (
    Counts,
    DeadLetterStore,
    EntryRecord,
    Filters,
    Outcome,
    ReplayReport,
)
from server.domain.errors import InvalidArgument, Violation
from server.domain.pagination import PageTokens
from server.identity.components import Clocks
from server.services.convert import datetime_of, timestamp


def entry_message(row: EntryRecord) -> deadletter_pb2.DeadLetterEntry:
    message = deadletter_pb2.DeadLetterEntry(
        entry_id=row.entry_id,
        job_id=row.job_id,
        job_type=row.job_type,
        source_id=row.source_id,
        category=row.category,
        error_code=row.error_code,
        message=row.message,
        fingerprint=row.fingerprint,
        retryable=row.retryable,
        attempts=row.attempts,
        status=row.status,
        first_failed_at=timestamp(row.first_failed_at),
        last_failed_at=timestamp(row.last_failed_at),
        replay_count=row.replay_count,
    )
    if row.replay_job_id is not None:
        message.replay_job_id = row.replay_job_id
    return message


def _counts(counts: Counts) -> deadletter_pb2.DeadLetterCounts:
    return deadletter_pb2.DeadLetterCounts(
        total=counts.total, pending=counts.pending, retryable=counts.retryable
    )


def _results(report: ReplayReport) -> list[deadletter_pb2.DeadLetterReplayResult]:
    results = []
    for item in report.results:
        result = deadletter_pb2.DeadLetterReplayResult(
            entry_id=item.entry_id, outcome=item.outcome.value
        )
        if item.job_id is not None:
            result.job_id = item.job_id
        if item.reason is not None:
            result.reason = item.reason
        if item.message is not None:
            result.message = item.message
        results.append(result)
    return results


def _time(
    request: pb.ReplayPendingDeadLetterEntriesRequest,
    name: Literal["failed_after", "failed_before"],
) -> datetime | None:
    """A Timestamp field of the request, None when absent; InvalidArgument naming it
    when out of RFC 3339's range (a gRPC caller can send any seconds)."""
    if not request.HasField(name):
        return None
    field = "failedBefore" if name == "failed_before" else "failedAfter"
    return datetime_of(getattr(request, name), field=field)


class DeadLetterService(pb_grpc.DeadLetterServiceServicer):
    def __init__(
        self, store: DeadLetterStore, tokens: PageTokens, clocks: Clocks, pending_max: int
    ) -> None:
        """`pending_max`: the most entries one ReplayPendingDeadLetterEntries call
        examines (DEADLETTER_REPLAY_PENDING_MAX)."""
        self._store = store
        self._tokens = tokens
        self._clocks = clocks
        self._pending_max = pending_max

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clocks.wall(), UTC)

    async def ListDeadLetterEntries(
        self, request: pb.ListDeadLetterEntriesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListDeadLetterEntriesResponse:
        filters = Filters(
            status=request.status,
            category=request.category,
            error_code=request.error_code,
            job_type=request.job_type,
            source_id=request.source_id,
            fingerprint=request.fingerprint,
        )
        page = await deadletter.list_entries(
            self._store,
            self._tokens,
            current_call(),
            filters,
            limit=request.limit,
            continuation_token=request.continuation_token,
        )
        response = pb.ListDeadLetterEntriesResponse(
            items=[entry_message(row) for row in page.items]
        )
        if page.continuation_token is not None:
            response.continuation_token = page.continuation_token
        return response

    async def GetDeadLetterStats(
        self, request: pb.GetDeadLetterStatsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetDeadLetterStatsResponse:
        stats = await deadletter.stats(self._store, current_call(), now=self._now())
        response = pb.GetDeadLetterStatsResponse(
            totals=_counts(stats.totals),
            categories=[
                deadletter_pb2.DeadLetterCategoryStats(category=name, counts=_counts(counts))
                for name, counts in stats.categories
            ],
            top_clusters=[
                deadletter_pb2.DeadLetterCluster(
                    fingerprint=cluster.fingerprint,
                    category=cluster.category,
                    error_code=cluster.error_code,
                    sample_message=cluster.sample_message,
                    counts=_counts(cluster.counts),
                    last_failed_at=timestamp(cluster.last_failed_at),
                )
                for cluster in stats.top_clusters
            ],
        )
        if stats.oldest_pending_at is not None and stats.oldest_pending_age_s is not None:
            response.oldest_pending_at.CopyFrom(timestamp(stats.oldest_pending_at))
            response.oldest_pending_age.CopyFrom(
                duration_pb2.Duration(seconds=stats.oldest_pending_age_s)
            )
        return response

    async def GetDeadLetterSummary(
        self, request: pb.GetDeadLetterSummaryRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetDeadLetterSummaryResponse:
        summary = await deadletter.summary(self._store, current_call())
        return pb.GetDeadLetterSummaryResponse(
            groups=[
                deadletter_pb2.DeadLetterSummaryGroup(
                    category=group.category,
                    error_code=group.error_code,
                    counts=_counts(group.counts),
                    clusters=group.clusters,
                    last_failed_at=timestamp(group.last_failed_at),
                )
                for group in summary.groups
            ],
            totals=_counts(summary.totals),
        )

    async def ReplayDeadLetterEntry(
        self, request: pb.ReplayDeadLetterEntryRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReplayDeadLetterEntryResponse:
        report = await deadletter.replay_entry(
            self._store, current_call(), entry_id=request.entry_id, now=self._now()
        )
        return pb.ReplayDeadLetterEntryResponse(
            results=_results(report),
            replayed=report.count(Outcome.REPLAYED),
            skipped=report.count(Outcome.SKIPPED),
            failed=report.count(Outcome.FAILED),
        )

    async def BatchReplayDeadLetterEntries(
        self, request: pb.BatchReplayDeadLetterEntriesRequest, context: grpc.aio.ServicerContext
    ) -> pb.BatchReplayDeadLetterEntriesResponse:
        report = await deadletter.replay_batch(
            self._store, current_call(), entry_ids=list(request.entry_ids), now=self._now()
        )
        return pb.BatchReplayDeadLetterEntriesResponse(
            results=_results(report),
            replayed=report.count(Outcome.REPLAYED),
            skipped=report.count(Outcome.SKIPPED),
            failed=report.count(Outcome.FAILED),
        )

    async def ReplayPendingDeadLetterEntries(
        self,
        request: pb.ReplayPendingDeadLetterEntriesRequest,
        context: grpc.aio.ServicerContext,
    ) -> pb.ReplayPendingDeadLetterEntriesResponse:
        violations: list[Violation] = []
        times: dict[str, datetime | None] = {}
        names: tuple[Literal["failed_after", "failed_before"], ...] = (
            "failed_after",
            "failed_before",
        )
        for name in names:
            try:
                times[name] = _time(request, name)
            except InvalidArgument as error:  # out of RFC 3339's range, named
                times[name] = None
                violations.extend(error.violations)
        filters = Filters(
            category=request.category,
            error_code=request.error_code,
            job_type=request.job_type,
            source_id=request.source_id,
            fingerprint=request.fingerprint,
            failed_after=times["failed_after"],
            failed_before=times["failed_before"],
            violations=tuple(violations),
        )
        report = await deadletter.replay_pending(
            self._store,
            self._tokens,
            current_call(),
            filters,
            limit=request.limit,
            limit_max=self._pending_max,
            continuation_token=request.continuation_token,
            now=self._now(),
        )
        response = pb.ReplayPendingDeadLetterEntriesResponse(
            results=_results(report),
            replayed=report.count(Outcome.REPLAYED),
            skipped=report.count(Outcome.SKIPPED),
            failed=report.count(Outcome.FAILED),
        )
        if report.continuation_token is not None:
            response.continuation_token = report.continuation_token
        return response

"""JobsService: read the request, call the domain (`server/domain/jobs.py`), convert
the result. Times come from the process clock (`Components.clocks.wall`), the one
leasing compares with."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
from google.rpc import status_pb2

from orchestrator.jobengine.v1 import jobs_service_pb2 as pb
from orchestrator.jobengine.v1 import jobs_service_pb2_grpc as pb_grpc
from server.domain import jobs
from server.domain.context import current_call
from server.domain.errors import DomainError
from server.domain.jobs import JobLimits
from server.domain.pagination import PageTokens
from server.domain.units import Store
from server.errors import to_status
from server.identity.components import Clocks
from server.services import convert

_OK = status_pb2.Status(code=0)


class JobsService(pb_grpc.JobsServiceServicer):
    def __init__(self, store: Store, tokens: PageTokens, limits: JobLimits, clocks: Clocks) -> None:
        self._store = store
        self._tokens = tokens
        self._limits = limits
        self._clocks = clocks

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clocks.wall(), UTC)

    async def EnqueueJob(
        self, request: pb.EnqueueJobRequest, context: grpc.aio.ServicerContext
    ) -> pb.EnqueueJobResponse:
        enqueued = await jobs.enqueue_job(
            self._store,
            current_call(),
            convert.enqueue_request(request.job),
            self._limits,
            now=self._now(),
        )
        return pb.EnqueueJobResponse(job=convert.job(enqueued.job), created=enqueued.created)

    async def BatchEnqueueJobs(
        self, request: pb.BatchEnqueueJobsRequest, context: grpc.aio.ServicerContext
    ) -> pb.BatchEnqueueJobsResponse:
        requests: list[jobs.EnqueueRequest | DomainError] = []
        for message in request.jobs:
            try:
                requests.append(convert.enqueue_request(message))
            except DomainError as error:  # e.g. runAt out of RFC 3339's range
                requests.append(error)
        results = await jobs.batch_enqueue_jobs(
            self._store, current_call(), requests, self._limits, now=self._now()
        )
        response = pb.BatchEnqueueJobsResponse()
        for item in results:
            result = response.results.add()
            if item.error is not None:
                result.status.CopyFrom(to_status(item.error))
            elif item.enqueued is not None:
                result.status.CopyFrom(_OK)
                convert.job(item.enqueued.job, into=result.job)
                result.created = item.enqueued.created
        return response

    async def ListJobs(
        self, request: pb.ListJobsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListJobsResponse:
        page = await jobs.list_jobs(
            self._store,
            self._tokens,
            current_call(),
            status=request.status,
            job_type=request.job_type,
            source_id=request.source_id,
            limit=request.limit,
            continuation_token=request.continuation_token,
        )
        response = pb.ListJobsResponse()
        for row in page.items:
            convert.job(row, into=response.items.add())
        if page.continuation_token is not None:
            response.continuation_token = page.continuation_token
        return response

    async def GetJobSummary(
        self, request: pb.GetJobSummaryRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetJobSummaryResponse:
        summary = await jobs.job_summary(self._store, current_call())
        response = pb.GetJobSummaryResponse(
            totals=pb.JobCounts(**summary.totals),
            job_types=[
                pb.JobTypeSummary(
                    job_type=item.job_type,
                    counts=pb.JobCounts(**item.counts),
                    last_updated_at=convert.timestamp(item.last_updated_at),
                )
                for item in summary.job_types
            ],
        )
        if summary.last_updated_at is not None:
            response.last_updated_at.CopyFrom(convert.timestamp(summary.last_updated_at))
        return response

    async def GetJob(
        self, request: pb.GetJobRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetJobResponse:
        found = await jobs.get_job(self._store, current_call(), job_id=request.job_id)
        return pb.GetJobResponse(
            job=convert.job(found.job),
            history=[convert.job_event(event) for event in found.history],
        )

    async def CancelJob(
        self, request: pb.CancelJobRequest, context: grpc.aio.ServicerContext
    ) -> pb.CancelJobResponse:
        job = await jobs.cancel_job(
            self._store, current_call(), job_id=request.job_id, now=self._now()
        )
        return pb.CancelJobResponse(job=convert.job(job))

    async def ReplayJob(
        self, request: pb.ReplayJobRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReplayJobResponse:
        job = await jobs.replay_job(
            self._store, current_call(), job_id=request.job_id, now=self._now()
        )
        return pb.ReplayJobResponse(job=convert.job(job))

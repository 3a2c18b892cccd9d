"""Jobs for Python callers, over any transport (DESIGN.md §4.1 `/jobs`): enqueue,
read, list, cancel and replay the caller's tenant's jobs.

Enqueueing, canceling and replaying are operator actions: the caller's headers need
`operator_reason` (seed 000), and the token `orch:operate`; reads need `orch:read`.
Workers take and finish jobs with `clients.worker.Worker` instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from clients.base import Pager, ServiceClient
from clients.json_values import to_value
from orchestrator.jobengine.v1 import job_pb2
from orchestrator.jobengine.v1 import jobs_service_pb2 as pb

JobPager = Pager[pb.ListJobsRequest, pb.ListJobsResponse, job_pb2.Job]


def new_job(
    job_type: str,
    source_id: str,
    *,
    payload: object = None,
    priority: int = 0,
    max_attempts: int = 0,
    idempotency_key: str | None = None,
    run_at: datetime | None = None,
    pack_run_id: str | None = None,
    backoff: job_pb2.Backoff | None = None,
) -> job_pb2.Job:
    """The `Job` message to enqueue. `payload` is any JSON value (see
    `clients.json_values.to_value` for what raises); `max_attempts` 0 is the server's
    default (3); `run_at` an aware datetime."""
    job = job_pb2.Job(
        job_type=job_type, source_id=source_id, priority=priority, max_attempts=max_attempts
    )
    if payload is not None:
        job.payload.CopyFrom(to_value(payload))
    if idempotency_key is not None:
        job.idempotency_key = idempotency_key
    if run_at is not None:
        job.run_at.FromDatetime(run_at)
    if pack_run_id is not None:
        job.pack_run_id = pack_run_id
    if backoff is not None:
        job.backoff.CopyFrom(backoff)
    return job


class JobsClient(ServiceClient):
    service = pb.DESCRIPTOR.services_by_name["JobsService"]

    async def enqueue_job(self, job: job_pb2.Job) -> pb.EnqueueJobResponse:
        """Enqueue `job` (see `new_job`); the response says whether it was created or
        an idempotent repeat. Raises `ApiError` INVALID_ARGUMENT, NOT_FOUND (source),
        FAILED_PRECONDITION (source paused or disabled) or ALREADY_EXISTS (key reused
        with another body)."""
        return await self.call("EnqueueJob", pb.EnqueueJobRequest(job=job), pb.EnqueueJobResponse)

    async def batch_enqueue_jobs(self, jobs: Sequence[job_pb2.Job]) -> pb.BatchEnqueueJobsResponse:
        """Enqueue 1 to 1,000 jobs in one call; one result per job, in order."""
        request = pb.BatchEnqueueJobsRequest(jobs=list(jobs))
        return await self.call("BatchEnqueueJobs", request, pb.BatchEnqueueJobsResponse)

    async def get_job(self, job_id: str) -> pb.GetJobResponse:
        """The job and its history (events oldest first); NOT_FOUND when not the caller's."""
        request = pb.GetJobRequest(job_id=job_id)
        return await self.call("GetJob", request, pb.GetJobResponse)

    async def list_jobs(
        self,
        *,
        status: str = "",
        job_type: str = "",
        source_id: str = "",
        limit: int = 0,
        continuation_token: str = "",
    ) -> pb.ListJobsResponse:
        """One page, newest first: (createdAt, jobId) descending; `limit` 0 means the
        server's default."""
        request = pb.ListJobsRequest(
            status=status,
            job_type=job_type,
            source_id=source_id,
            limit=limit,
            continuation_token=continuation_token,
        )
        return await self._list(request)

    def iter_jobs(
        self, *, status: str = "", job_type: str = "", source_id: str = "", limit: int = 0
    ) -> JobPager:
        """Every matching job, newest first, following continuation tokens (`limit` is
        the page size)."""
        request = pb.ListJobsRequest(
            status=status, job_type=job_type, source_id=source_id, limit=limit
        )
        return Pager(self._list, request, _job_items)

    async def cancel_job(self, job_id: str) -> job_pb2.Job:
        """Cancel a job that has not finished; a leased job's worker learns it at its
        next heartbeat. FAILED_PRECONDITION when it succeeded or was dead-lettered."""
        request = pb.CancelJobRequest(job_id=job_id)
        return (await self.call("CancelJob", request, pb.CancelJobResponse)).job

    async def replay_job(self, job_id: str) -> job_pb2.Job:
        """Enqueue a clone of a finished job (its `replayOf` names the original)."""
        request = pb.ReplayJobRequest(job_id=job_id)
        return (await self.call("ReplayJob", request, pb.ReplayJobResponse)).job

    async def get_job_summary(self) -> pb.GetJobSummaryResponse:
        """Counts per status, in total and per job type."""
        request = pb.GetJobSummaryRequest()
        return await self.call("GetJobSummary", request, pb.GetJobSummaryResponse)

    async def _list(self, request: pb.ListJobsRequest) -> pb.ListJobsResponse:
        return await self.call("ListJobs", request, pb.ListJobsResponse)


def _job_items(page: pb.ListJobsResponse) -> list[job_pb2.Job]:
    return list(page.items)

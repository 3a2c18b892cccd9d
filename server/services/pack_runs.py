"""PackRunsService: read the request, call the domain (`server/domain/pack_runs.py`),
convert the result. Times come from the process clock (`Components.clocks.wall`),
the one leasing compares with."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
from google.protobuf import duration_pb2

from orchestrator.jobengine.v1 import job_pb2, pack_run_pb2
from orchestrator.jobengine.v1 import pack_runs_service_pb2 as pb
from orchestrator.jobengine.v1 import pack_runs_service_pb2_grpc as pb_grpc
from server.domain import pack_runs
from server.domain.context import current_call
from server.domain.jobs import JobLimits
from server.domain.pack_runs import PackJobRequest, PackRunView, PackStep
from server.domain.pagination import PageTokens
from server.domain.units import Store
from server.identity.components import Clocks
from server.services import convert


def _duration(seconds: float) -> duration_pb2.Duration:
    whole = int(seconds)
    return duration_pb2.Duration(seconds=whole, nanos=round((seconds - whole) * 1e9))


def job_request(message: pack_run_pb2.PackJob, index: int) -> PackJobRequest:
    """The domain's view of `jobs[index]` of a pack to create (output-only fields
    ignored). Raises InvalidArgument naming `jobs[index].backoff.*` for a Duration that
    is not valid."""
    job = job_pb2.Job(
        job_type=message.job_type,
        source_id=message.source_id,
        priority=message.priority,
        max_attempts=message.max_attempts,
    )
    if message.HasField("payload"):
        job.payload.CopyFrom(message.payload)
    if message.HasField("backoff"):
        job.backoff.CopyFrom(message.backoff)
    return PackJobRequest(
        name=message.name,
        job=convert.enqueue_request(job, field=f"jobs[{index}]"),
        depends_on=tuple(message.depends_on),
    )


def pack_job(step: PackStep) -> pack_run_pb2.PackJob:
    message = pack_run_pb2.PackJob(
        name=step.name,
        job_type=step.job_type,
        source_id=step.source_id,
        priority=step.priority,
        max_attempts=step.max_attempts,
        backoff=job_pb2.Backoff(
            initial_delay=_duration(step.backoff_initial_s),
            max_delay=_duration(step.backoff_max_s),
            multiplier=step.backoff_multiplier,
            jitter=step.backoff_jitter,
        ),
        depends_on=step.depends_on,
        status=step.status,
        attempts=step.attempts,
    )
    payload = pack_runs.step_payload(step)
    if step.payload is not None:
        message.payload.CopyFrom(convert.json_value(payload))
    if step.job_id is not None:
        message.job_id = step.job_id
    if step.job_status is not None:
        message.job_status = step.job_status
    if step.started_at is not None:
        message.started_at.CopyFrom(convert.timestamp(step.started_at))
    if step.finished_at is not None:
        message.finished_at.CopyFrom(convert.timestamp(step.finished_at))
    return message


def pack_run(view: PackRunView) -> pack_run_pb2.PackRun:
    """A run as the API's `PackRun` (its jobs only when `view.steps` has them)."""
    run = view.run
    message = pack_run_pb2.PackRun(
        pack_run_id=run.pack_run_id,
        pack_name=run.pack_name,
        status=run.status,
        counts=pack_run_pb2.PackRunCounts(**view.counts),
        created_at=convert.timestamp(run.created_at),
        updated_at=convert.timestamp(run.updated_at),
    )
    if view.steps is not None:
        message.jobs.extend(pack_job(step) for step in view.steps)
    if run.retry_of is not None:
        message.retry_of = run.retry_of
    if run.retried_by is not None:
        message.retried_by = run.retried_by
    if run.finished_at is not None:
        message.finished_at.CopyFrom(convert.timestamp(run.finished_at))
    return message


class PackRunsService(pb_grpc.PackRunsServiceServicer):
    def __init__(self, store: Store, tokens: PageTokens, limits: JobLimits, clocks: Clocks) -> None:
        self._store = store
        self._tokens = tokens
        self._limits = limits
        self._clocks = clocks

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clocks.wall(), UTC)

    async def CreatePackRun(
        self, request: pb.CreatePackRunRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreatePackRunResponse:
        view = await pack_runs.create_pack_run(
            self._store,
            current_call(),
            request.pack_run.pack_name,
            [job_request(job, i) for i, job in enumerate(request.pack_run.jobs)],
            self._limits,
            now=self._now(),
        )
        return pb.CreatePackRunResponse(pack_run=pack_run(view))

    async def ListPackRuns(
        self, request: pb.ListPackRunsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListPackRunsResponse:
        page = await pack_runs.list_pack_runs(
            self._store,
            self._tokens,
            current_call(),
            status=request.status,
            pack_name=request.pack_name,
            limit=request.limit,
            continuation_token=request.continuation_token,
        )
        response = pb.ListPackRunsResponse(items=[pack_run(view) for view in page.items])
        if page.continuation_token is not None:
            response.continuation_token = page.continuation_token
        return response

    async def GetPackRun(
        self, request: pb.GetPackRunRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetPackRunResponse:
        view = await pack_runs.get_pack_run(
            self._store, current_call(), pack_run_id=request.pack_run_id
        )
        return pb.GetPackRunResponse(pack_run=pack_run(view))

    async def CancelPackRun(
        self, request: pb.CancelPackRunRequest, context: grpc.aio.ServicerContext
    ) -> pb.CancelPackRunResponse:
        canceled = await pack_runs.cancel_pack_run(
            self._store, current_call(), pack_run_id=request.pack_run_id, now=self._now()
        )
        return pb.CancelPackRunResponse(
            pack_run=pack_run(canceled.view),
            canceled_jobs=canceled.canceled_jobs,
            canceled_pending=canceled.canceled_pending,
        )

    async def RetryPackRun(
        self, request: pb.RetryPackRunRequest, context: grpc.aio.ServicerContext
    ) -> pb.RetryPackRunResponse:
        view = await pack_runs.retry_pack_run(
            self._store, current_call(), pack_run_id=request.pack_run_id, now=self._now()
        )
        return pb.RetryPackRunResponse(pack_run=pack_run(view))

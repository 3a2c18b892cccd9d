"""SourcesService: read the request, call the domain, convert the result. A scheduler
source is answered with its schedule (issue 10), read with the sources."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import timedelta

import grpc
from google.protobuf import duration_pb2

from orchestrator.jobengine.v1 import job_pb2, source_pb2
from orchestrator.jobengine.v1 import sources_service_pb2 as pb
from orchestrator.jobengine.v1 import sources_service_pb2_grpc as pb_grpc
from server.domain import sources
from server.domain.context import current_call
from server.domain.jobs import JobLimits
from server.domain.pagination import PageTokens
from server.domain.schedules import SCHEDULER_SOURCE_TYPE, ScheduleLike, ScheduleRequest
from server.domain.sources import SourceLike
from server.domain.units import Store
from server.services import convert


def _duration(seconds: float) -> duration_pb2.Duration:
    message = duration_pb2.Duration()
    message.FromTimedelta(timedelta(seconds=seconds))
    return message


def schedule(row: ScheduleLike) -> source_pb2.Schedule:
    """A stored schedule as the API's `Schedule` (its template with defaults applied)."""
    template = source_pb2.JobTemplate(
        job_type=row.job_type,
        priority=row.priority,
        max_attempts=row.max_attempts,
        backoff=job_pb2.Backoff(
            initial_delay=_duration(row.backoff_initial_s),
            max_delay=_duration(row.backoff_max_s),
            multiplier=row.backoff_multiplier,
            jitter=row.backoff_jitter,
        ),
    )
    if row.payload is not None:
        template.payload.CopyFrom(convert.json_value(json.loads(row.payload)))
    message = source_pb2.Schedule(
        cron=row.cron,
        time_zone=row.time_zone,
        job_template=template,
        misfire_policy=row.misfire_policy,
    )
    if row.next_run_at.year < 9999:  # 9999-12-31: the expression never fires again
        message.next_run_at.CopyFrom(convert.timestamp(row.next_run_at))
    if row.last_run_at is not None:
        message.last_run_at.CopyFrom(convert.timestamp(row.last_run_at))
    return message


def schedule_request(message: source_pb2.Schedule) -> ScheduleRequest:
    """The domain's view of a requested schedule; the template read as a job would be."""
    template = None
    if message.HasField("job_template"):
        given = message.job_template
        job = job_pb2.Job(
            job_type=given.job_type, priority=given.priority, max_attempts=given.max_attempts
        )
        if given.HasField("payload"):
            job.payload.CopyFrom(given.payload)
        if given.HasField("backoff"):
            job.backoff.CopyFrom(given.backoff)
        template = convert.enqueue_request(job, field="schedule.jobTemplate")
    return ScheduleRequest(
        cron=message.cron,
        time_zone=message.time_zone,
        misfire_policy=message.misfire_policy,
        template=template,
    )


class SourcesService(pb_grpc.SourcesServiceServicer):
    def __init__(
        self, store: Store, tokens: PageTokens, payload_max_bytes: int | None = None
    ) -> None:
        self._store = store
        self._tokens = tokens
        # A schedule's job template is checked as an enqueued job is (JOB_PAYLOAD_MAX_BYTES).
        self._limits = JobLimits(
            payload_max_bytes=payload_max_bytes or JobLimits().payload_max_bytes
        )

    async def _with_schedules(
        self, tenant_id: str, rows: Sequence[SourceLike]
    ) -> list[source_pb2.Source]:
        """The sources as messages, each scheduler source with its schedule."""
        scheduled = [row.source_id for row in rows if row.source_type == SCHEDULER_SOURCE_TYPE]
        found: Mapping[str, ScheduleLike] = {}
        if scheduled:
            found = await self._store.schedules.of_sources(tenant_id, scheduled)
        messages = []
        for row in rows:
            message = convert.source(row)
            if row.source_id in found:
                message.schedule.CopyFrom(schedule(found[row.source_id]))
            messages.append(message)
        return messages

    async def ListSources(
        self, request: pb.ListSourcesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListSourcesResponse:
        page = await sources.list_sources(
            self._store,
            self._tokens,
            current_call(),
            source_type=request.source_type,
            enabled=request.enabled if request.HasField("enabled") else None,
            limit=request.limit,
            continuation_token=request.continuation_token,
        )
        call = current_call()
        items = await self._with_schedules(call.require_tenant(), page.items)
        response = pb.ListSourcesResponse(items=items)
        if page.continuation_token is not None:
            response.continuation_token = page.continuation_token
        return response

    async def GetSource(
        self, request: pb.GetSourceRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetSourceResponse:
        call = current_call()
        row = await sources.get_source(self._store, call, source_id=request.source_id)
        [source] = await self._with_schedules(call.require_tenant(), [row])
        return pb.GetSourceResponse(source=source)

    async def RegisterSource(
        self, request: pb.RegisterSourceRequest, context: grpc.aio.ServicerContext
    ) -> pb.RegisterSourceResponse:
        row, scheduled = await sources.register_source(
            self._store,
            current_call(),
            name=request.name,
            source_type=request.source_type,
            enabled=request.enabled if request.HasField("enabled") else True,
            schedule=schedule_request(request.schedule) if request.HasField("schedule") else None,
            limits=self._limits,
        )
        message = convert.source(row)
        if scheduled is not None:
            message.schedule.CopyFrom(schedule(scheduled))
        return pb.RegisterSourceResponse(source=message)

    async def PauseSource(
        self, request: pb.PauseSourceRequest, context: grpc.aio.ServicerContext
    ) -> pb.PauseSourceResponse:
        call = current_call()
        row = await sources.set_paused(self._store, call, source_id=request.source_id, paused=True)
        [source] = await self._with_schedules(call.require_tenant(), [row])
        return pb.PauseSourceResponse(source=source)

    async def ResumeSource(
        self, request: pb.ResumeSourceRequest, context: grpc.aio.ServicerContext
    ) -> pb.ResumeSourceResponse:
        call = current_call()
        row = await sources.set_paused(self._store, call, source_id=request.source_id, paused=False)
        [source] = await self._with_schedules(call.require_tenant(), [row])
        return pb.ResumeSourceResponse(source=source)

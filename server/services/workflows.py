"""WorkflowsService (seed 002 `/ingest`, `/workflows*`; issue 13 point 1): read the
request, call the domain (`server/domain/ingestion.py`, `server/domain/workflows.py`),
convert the result. Policy (tenant, scopes, the operator audit) and HTTP behaviour
(202, Cache-Control, ETag) come from the proto options."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import grpc
from google.protobuf import duration_pb2

from orchestrator.mesh.v1 import workflows_service_pb2 as pb
from orchestrator.mesh.v1 import workflows_service_pb2_grpc as pb_grpc
from server.config import Settings
from server.domain import ingestion, workflows
from server.domain.context import current_call
from server.domain.jobs import JobLimits
from server.domain.orchestra.definitions import ModelCache
from server.domain.orchestra.instances import OrchestraLimits
from server.domain.orchestra.records import OrchestraStore
from server.domain.pagination import PageTokens
from server.domain.units import Store
from server.domain.workflows import RunRecord, WorkflowReads, WorkflowRecord
from server.services.convert import timestamp
from server.services.orchestra import limits_of, orchestra_store, variables_of
from server.storage.repositories.workflows import workflow_reads


def workflow_message(record: WorkflowRecord) -> pb.Workflow:
    return pb.Workflow(
        definition_id=record.definition_id,
        latest_version=record.versions[-1],
        versions=list(record.versions),
        shared=record.tenant_id is None,
        job_types=workflows.job_types_of(record.document),
        updated_at=timestamp(record.updated_at),
    )


def run_message(record: RunRecord) -> pb.WorkflowRun:
    message = pb.WorkflowRun(
        run_id=record.instance_id,
        definition_id=record.definition_id,
        definition_version=record.definition_version,
        status=record.status,
        started_at=timestamp(record.created_at),
    )
    if record.ended_at is not None:
        message.ended_at.CopyFrom(timestamp(record.ended_at))
        started = message.started_at.ToDatetime(tzinfo=UTC)
        ended = message.ended_at.ToDatetime(tzinfo=UTC)
        duration = duration_pb2.Duration()
        duration.FromTimedelta(max(ended - started, timedelta(0)))
        message.duration.CopyFrom(duration)
    return message


class WorkflowsService(pb_grpc.WorkflowsServiceServicer):
    def __init__(
        self,
        store: Store,
        orchestra: OrchestraStore,
        reads: WorkflowReads,
        tokens: PageTokens,
        job_limits: JobLimits,
        orchestra_limits: OrchestraLimits,
        wall: Callable[[], float],
    ) -> None:
        """`wall`: the process clock, seconds since the epoch (tests move it)."""
        self._store = store
        self._orchestra = orchestra
        self._reads = reads
        self._tokens = tokens
        self._job_limits = job_limits
        self._orchestra_limits = orchestra_limits
        self._models = ModelCache()
        self._sources = ingestion.MeshSources()
        self._wall = wall

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._wall(), UTC)

    async def Ingest(
        self, request: pb.IngestRequest, context: grpc.aio.ServicerContext
    ) -> pb.IngestResponse:
        asked = ingestion.IngestRequest(
            source=request.source, scope=request.scope, correlation_id=request.correlation_id
        )
        done = await ingestion.ingest(
            self._store,
            current_call(),
            asked,
            self._job_limits,
            now=self._now(),
            sources=self._sources,
        )
        return pb.IngestResponse(
            job_id=done.job.job_id,
            job_type=done.job.job_type,
            status=done.job.status,
            source=asked.source,
            scope=asked.scope,
            correlation_id=asked.correlation_id,
            trace_id=done.trace_id,
        )

    async def ListWorkflows(
        self, request: pb.ListWorkflowsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListWorkflowsResponse:
        page = await workflows.list_workflows(
            self._reads,
            self._tokens,
            current_call(),
            limit=request.limit,
            token=request.continuation_token,
        )
        response = pb.ListWorkflowsResponse(items=[workflow_message(row) for row in page.items])
        if page.continuation_token is not None:
            response.continuation_token = page.continuation_token
        return response

    async def RunWorkflow(
        self, request: pb.RunWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> pb.RunWorkflowResponse:
        initial = variables_of(request.variables) if request.HasField("variables") else None
        call = current_call()
        run_id = await workflows.run_workflow(
            self._orchestra,
            self._models,
            call,
            request.definition_id,
            initial,
            self._orchestra_limits,
            now=self._now(),
        )
        return pb.RunWorkflowResponse(run_id=run_id, trace_id=call.trace_id)

    async def ListWorkflowRuns(
        self, request: pb.ListWorkflowRunsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListWorkflowRunsResponse:
        page = await workflows.list_runs(
            self._reads,
            self._tokens,
            current_call(),
            definition_id=request.definition_id,
            status=request.status,
            limit=request.limit,
            token=request.continuation_token,
        )
        response = pb.ListWorkflowRunsResponse(items=[run_message(row) for row in page.items])
        if page.continuation_token is not None:
            response.continuation_token = page.continuation_token
        return response


def build_workflows_service(
    store: Store, tokens: PageTokens, settings: Settings, wall: Callable[[], float]
) -> WorkflowsService:
    """The servicer over the product's (SQL) store, as `server/services/table.py` builds
    it: the job limits and Orchestra limits of `settings`."""
    return WorkflowsService(
        store,
        orchestra_store(store),
        workflow_reads(store),
        tokens,
        JobLimits(payload_max_bytes=settings.job_payload_max_bytes),
        limits_of(settings),
        wall,
    )

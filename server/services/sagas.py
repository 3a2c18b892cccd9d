"""SagasService (issue 13 point 2): read the request, call the domain
(`server/domain/orchestra/sagas.py`), convert the result. Policy (orch:read, the
tenant from X-Stella-Tenant) and HTTP behaviour come from the proto options."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import grpc
from google.protobuf import duration_pb2

from orchestrator.mesh.v1 import sagas_service_pb2 as pb
from orchestrator.mesh.v1 import sagas_service_pb2_grpc as pb_grpc
from server.domain.context import current_call
from server.domain.orchestra import sagas
from server.domain.orchestra.records import OrchestraStore
from server.services.convert import timestamp


def _duration(value: timedelta) -> duration_pb2.Duration:
    message = duration_pb2.Duration()
    message.FromTimedelta(value)
    return message


def _timings(
    message: pb.Saga | pb.SagaStep | pb.SagaCompensation,
    started: datetime | None,
    ended: datetime | None,
) -> None:
    """Set startedAt, endedAt and duration (the latter two only once it ended)."""
    if started is not None:
        message.started_at.CopyFrom(timestamp(started))
    if ended is not None:
        message.ended_at.CopyFrom(timestamp(ended))
        if started is not None:
            message.duration.CopyFrom(_duration(sagas.utc(ended) - sagas.utc(started)))


def counts(value: sagas.SagaCounts) -> pb.SagaCounts:
    by = value.by_status
    return pb.SagaCounts(
        total=value.total,
        running=by["running"],
        compensating=by["compensating"],
        completed=by["completed"],
        compensated=by["compensated"],
        failed=by["failed"],
        canceled=by["canceled"],
        finished=value.finished,
    )


def saga_message(view: sagas.SagaView) -> pb.Saga:
    """The API's Saga of a saga view."""
    row = view.instance
    message = pb.Saga(
        saga_id=row.instance_id,
        definition_id=row.definition_id,
        definition_version=row.definition_version,
        status=row.status,
    )
    _timings(message, row.created_at, row.ended_at)
    if row.incident:
        incident = json.loads(row.incident)
        message.incident.CopyFrom(
            pb.SagaIncident(
                kind=incident.get("kind", ""),
                node_id=incident.get("node_id", ""),
                message=incident.get("message", ""),
                job_id=incident.get("job_id", ""),
            )
        )
        if incident.get("created_at"):
            message.incident.created_at.FromJsonString(incident["created_at"])
    for step in view.steps:
        item = message.steps.add(
            step_id=step.step_id,
            position=step.position,
            node_id=step.node_id,
            job_type=step.job_type,
            job_id=step.job_id or "",
            status=sagas.shown_step_status(step.status),
            compensation=step.compensation or "",
            error=step.error or "",
        )
        _timings(item, step.started_at, step.ended_at)
    for step in view.compensations:
        compensation = message.compensations.add(
            order=step.compensation_order or 0,
            step_id=step.step_id,
            node_id=step.node_id,
            job_type=step.compensation or "",
            job_id=step.compensation_job_id or "",
            status=step.compensation_status or "",
            error=step.compensation_error or "",
        )
        _timings(compensation, step.compensation_started_at, step.compensation_ended_at)
    return message


class SagasService(pb_grpc.SagasServiceServicer):
    def __init__(self, store: OrchestraStore) -> None:
        self._store = store

    async def GetSagaStats(
        self, request: pb.GetSagaStatsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetSagaStatsResponse:
        stats = await sagas.saga_stats(self._store, current_call())
        response = pb.GetSagaStatsResponse(totals=counts(stats.totals))
        if (mean := stats.totals.mean_duration) is not None:
            response.mean_duration.CopyFrom(_duration(mean))
        for definition_id, value in stats.definitions:
            item = response.definitions.add(definition_id=definition_id, counts=counts(value))
            if (mean := value.mean_duration) is not None:
                item.mean_duration.CopyFrom(_duration(mean))
        return response

    async def GetSaga(
        self, request: pb.GetSagaRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetSagaResponse:
        view = await sagas.get_saga(self._store, current_call(), request.saga_id)
        return pb.GetSagaResponse(saga=saga_message(view))

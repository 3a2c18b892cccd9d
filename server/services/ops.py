"""OpsService: health, readiness, dependency health, info, effective config, metrics
(ops_service.proto); the facts come from `server.observability.operations`."""

from __future__ import annotations

import grpc
from google.api import httpbody_pb2
from google.protobuf import duration_pb2, struct_pb2

from orchestrator.mesh.v1 import ops_service_pb2 as pb
from orchestrator.mesh.v1 import ops_service_pb2_grpc as pb_grpc
from server.domain.health import not_ready, overall_status
from server.observability.metrics import CONTENT_TYPE
from server.observability.operations import Operations
from server.services import convert


class OpsService(pb_grpc.OpsServiceServicer):
    def __init__(self, operations: Operations) -> None:
        self._ops = operations

    async def GetHealth(
        self, request: pb.GetHealthRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetHealthResponse:
        return pb.GetHealthResponse(status="ok")

    async def GetReadiness(
        self, request: pb.GetReadinessRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetReadinessResponse:
        checks = await self._ops.readiness_checks()
        refusal = not_ready(checks)
        if refusal is not None:
            raise refusal
        return pb.GetReadinessResponse(
            status="ready",
            checks=[pb.ReadinessCheck(name=c.name, ready=c.ready, detail=c.detail) for c in checks],
        )

    async def GetSystemHealth(
        self, request: pb.GetSystemHealthRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetSystemHealthResponse:
        started, results = await self._ops.system_health()
        return pb.GetSystemHealthResponse(
            status=overall_status(results),
            check_time=convert.timestamp(started),
            dependencies=[
                pb.DependencyHealth(
                    name=r.name,
                    kind=r.kind,
                    target=r.target,
                    status=r.status,
                    latency=_duration(r.latency_s),
                    detail=r.detail,
                )
                for r in results
            ],
        )

    async def GetInfo(
        self, request: pb.GetInfoRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetInfoResponse:
        info = self._ops.info()
        return pb.GetInfoResponse(
            name=info.build.name,
            version=info.build.version,
            git_revision=info.build.git_revision,
            start_time=convert.timestamp(info.start_time),
            uptime=_duration(info.uptime_s),
            api_versions=info.api_versions,
            database_backend=info.database_backend,
        )

    async def GetEffectiveConfig(
        self, request: pb.GetEffectiveConfigRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetEffectiveConfigResponse:
        return pb.GetEffectiveConfigResponse(
            config_file=self._ops.config_file,
            values=[
                pb.ConfigValue(
                    name=entry.name,
                    value=_value(entry.value),
                    source=entry.source,
                    redacted=entry.redacted,
                )
                for entry in self._ops.config()
            ],
        )

    async def GetMetrics(
        self, request: pb.GetMetricsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMetricsResponse:
        body = httpbody_pb2.HttpBody(content_type=CONTENT_TYPE, data=await self._ops.metrics())
        return pb.GetMetricsResponse(body=body)


def _duration(seconds: float) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(round(seconds * 1e9))
    return duration


def _value(value: object) -> struct_pb2.Value:
    """A JSON value (None, bool, number, string, list) as google.protobuf.Value."""
    result = struct_pb2.Value()
    if value is None:
        result.null_value = struct_pb2.NULL_VALUE
    elif isinstance(value, bool):
        result.bool_value = value
    elif isinstance(value, int | float):
        result.number_value = float(value)
    elif isinstance(value, list | tuple):
        result.list_value.values.extend(_value(item) for item in value)
    else:
        result.string_value = str(value)
    return result

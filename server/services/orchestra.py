"""OrchestraService (seed 004, the cross-site API): read the request, call the domain
(`server/domain/orchestra/instances.py`), convert the result.

Policy (the permission `access orchestra api`, the tenant from the client's binding)
and HTTP behaviour (201, 422 mappings, `Cache-Control: no-store`, the bare array)
come from the proto options, not from here. JSON numbers arrive as
`google.protobuf.Value` doubles; integral ones within 2^53 become integers again, so
`amount < 1000` compares an int with an int in CEL, as the JSON said.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf import struct_pb2

from orchestrator.orchestra.v1 import instance_pb2
from orchestrator.orchestra.v1 import orchestra_service_pb2 as pb
from orchestrator.orchestra.v1 import orchestra_service_pb2_grpc as pb_grpc
from server.config import Settings
from server.domain.context import current_call
from server.domain.errors import InvalidArgument
from server.domain.orchestra import instances, variables
from server.domain.orchestra.definitions import ModelCache
from server.domain.orchestra.instances import InstanceView, OrchestraLimits
from server.domain.orchestra.records import OrchestraStore
from server.domain.units import Store
from server.services.convert import timestamp
from server.storage.repositories.orchestra import SqlOrchestraStore
from server.storage.store import SqlStore


def orchestra_store(store: Store) -> SqlOrchestraStore:
    """The Orchestra view of the product's store (the SQL store: the only one)."""
    if not isinstance(store, SqlStore):
        raise TypeError(f"the Orchestra engine runs on the SQL store, got {type(store)!r}")
    return SqlOrchestraStore(store)


def limits_of(settings: Settings) -> OrchestraLimits:
    return OrchestraLimits(
        variables_max_bytes=settings.orchestra_variables_max_bytes,
        job_payload_max_bytes=settings.job_payload_max_bytes,
    )


def from_value(value: struct_pb2.Value, field: str = "value") -> Any:
    """A JSON value; InvalidArgument naming `field` (its path) for NaN or an infinity,
    which a gRPC caller can put in a Value and JSON cannot carry."""
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return from_struct(value.struct_value, field)
    if kind == "list_value":
        return [from_value(item, f"{field}[{i}]") for i, item in enumerate(value.list_value.values)]
    if kind == "number_value":
        number = value.number_value
        if not math.isfinite(number):
            raise InvalidArgument.of(field, "must be JSON: NaN and infinities are not")
        return variables.normalize(number)
    if kind in ("string_value", "bool_value"):
        return getattr(value, kind)
    return None


def from_struct(struct: struct_pb2.Struct, field: str) -> dict[str, Any]:
    return {key: from_value(item, f"{field}.{key}") for key, item in struct.fields.items()}


def variables_of(value: struct_pb2.Value) -> dict[str, Any]:
    """A request's `variables`: a JSON object; InvalidArgument naming `variables` for
    null or any other JSON value (seed 004: `variables` is an object)."""
    if value.WhichOneof("kind") != "struct_value":
        kind = _KINDS.get(value.WhichOneof("kind") or "", "nothing")
        raise InvalidArgument.of("variables", f"must be a JSON object of variables, got {kind}")
    return from_struct(value.struct_value, "variables")


_KINDS = {
    "null_value": "null",
    "number_value": "a number",
    "string_value": "a string",
    "bool_value": "a boolean",
    "list_value": "an array",
}


def to_struct(values: Mapping[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(values)
    return struct


def instance_state(view: InstanceView) -> instance_pb2.InstanceState:
    row = view.instance
    message = instance_pb2.InstanceState(
        id=row.instance_id,
        definition_id=row.definition_id,
        status=row.status,
        tenant_id=row.tenant_id,
        definition_version=row.definition_version,
        created_at=timestamp(row.created_at),
        updated_at=timestamp(row.updated_at),
    )
    for token in view.tokens:
        state = message.tokens.add(id=token.token_id, node_id=token.node_id, status=token.status)
        if token.job_id is not None:
            state.job_id = token.job_id
        if token.due_at is not None:
            state.due_at.CopyFrom(timestamp(token.due_at))
    if row.incident:
        incident = json.loads(row.incident)
        message.incident.CopyFrom(
            instance_pb2.Incident(
                node_id=incident.get("node_id", ""),
                token_id=incident.get("token_id", ""),
                kind=incident.get("kind", ""),
                message=incident.get("message", ""),
                job_id=incident.get("job_id", ""),
            )
        )
        created = incident.get("created_at")
        if created:
            message.incident.created_at.FromJsonString(created)
    return message


class OrchestraService(pb_grpc.OrchestraServiceServicer):
    def __init__(
        self,
        store: OrchestraStore,
        models: ModelCache,
        limits: OrchestraLimits,
        wall: Callable[[], float],
    ) -> None:
        """`wall`: the process clock, seconds since the epoch (tests move it)."""
        self._store = store
        self._models = models
        self._limits = limits
        self._wall = wall

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._wall(), UTC)

    async def StartProcess(
        self, request: pb.StartProcessRequest, context: grpc.aio.ServicerContext
    ) -> pb.StartProcessResponse:
        initial = variables_of(request.variables) if request.HasField("variables") else None
        instance_id = await instances.start_process(
            self._store,
            self._models,
            current_call(),
            request.definition_id,
            initial,
            self._limits,
            now=self._now(),
        )
        return pb.StartProcessResponse(instance_id=instance_id)

    async def ListInstances(
        self, request: pb.ListInstancesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListInstancesResponse:
        rows = await instances.list_instances(
            self._store,
            current_call(),
            definition_id=request.definition_id,
            status=request.status,
        )
        return pb.ListInstancesResponse(
            instances=[
                instance_pb2.InstanceSummary(
                    id=row.instance_id, definition_id=row.definition_id, status=row.status
                )
                for row in rows
            ]
        )

    async def GetInstance(
        self, request: pb.GetInstanceRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetInstanceResponse:
        view = await instances.get_instance(self._store, current_call(), request.instance_id)
        return pb.GetInstanceResponse(instance=instance_state(view))

    async def SignalToken(
        self, request: pb.SignalTokenRequest, context: grpc.aio.ServicerContext
    ) -> pb.SignalTokenResponse:
        merge = variables_of(request.variables) if request.HasField("variables") else None
        status = await instances.signal_token(
            self._store,
            self._models,
            current_call(),
            request.token_id,
            merge,
            self._limits,
            now=self._now(),
        )
        return pb.SignalTokenResponse(status=status)

    async def GetVariables(
        self, request: pb.GetVariablesRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetVariablesResponse:
        values = await instances.get_variables(self._store, current_call(), request.instance_id)
        return pb.GetVariablesResponse(variables=to_struct(values))

    async def SetVariable(
        self, request: pb.SetVariableRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetVariableResponse:
        if not request.HasField("value"):
            raise InvalidArgument.of("value", "is required (any JSON value, null included)")
        status = await instances.set_variable(
            self._store,
            current_call(),
            request.instance_id,
            request.name,
            from_value(request.value),
            self._limits,
            now=self._now(),
        )
        return pb.SetVariableResponse(status=status)

    async def CancelInstance(
        self, request: pb.CancelInstanceRequest, context: grpc.aio.ServicerContext
    ) -> pb.CancelInstanceResponse:
        view = await instances.cancel_instance(
            self._store, current_call(), request.instance_id, request.reason, now=self._now()
        )
        return pb.CancelInstanceResponse(instance=instance_state(view))

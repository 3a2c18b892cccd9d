"""DefinitionsService (`/orchestra-admin/definitions`): process definitions over the
admin API, as `orchestrator definitions load` stores them from the command line.
The domain is `server/domain/orchestra/definitions.py`; policy (orch:admin, the
audited put) and HTTP behaviour (201/200, 409, no-store) are the proto's options."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import grpc

from orchestrator.orchestra.v1 import definition_pb2
from orchestrator.orchestra.v1 import definitions_service_pb2 as pb
from orchestrator.orchestra.v1 import definitions_service_pb2_grpc as pb_grpc
from server.domain.context import current_call
from server.domain.errors import InvalidArgument, shown
from server.domain.orchestra import definitions
from server.domain.orchestra.model import DefinitionSpec, FlowSpec, NodeSpec
from server.domain.orchestra.records import DefinitionRecord, OrchestraStore
from server.domain.pagination import PageTokens
from server.services.convert import timestamp

# Violations name the body's fields under the request's `definition` field.
_PREFIX = "definition."


def definition_message(record: DefinitionRecord) -> definition_pb2.ProcessDefinition:
    """A stored version as the API shows it: the file format plus who stored it, when."""
    document: dict[str, Any] = definitions.document_of(record)
    message = definition_pb2.ProcessDefinition(
        id=record.definition_id,
        version=record.version,
        nodes=[definition_pb2.Node(**node) for node in document["nodes"]],
        flows=[
            definition_pb2.Flow(from_node=flow["from"], to_node=flow["to"])
            for flow in document["flows"]
        ],
        created_at=timestamp(record.created_at),
        created_by=record.created_by,
    )
    for flow, written in zip(message.flows, document["flows"], strict=True):
        if written.get("condition"):
            flow.condition = written["condition"]
    if record.tenant_id is not None:
        message.tenant = record.tenant_id
    return message


def spec_of(message: definition_pb2.ProcessDefinition, definition_id: str) -> DefinitionSpec:
    """The spec a request's definition describes; its id must be empty or the path's."""
    if message.id and message.id != definition_id:
        raise InvalidArgument.of(
            f"{_PREFIX}id",
            f"must be empty or equal the path's definition id {definition_id!r},"
            f" got {shown(message.id)}",
        )
    return DefinitionSpec(
        id=definition_id,
        version=message.version,
        tenant=message.tenant if message.HasField("tenant") else None,
        nodes=tuple(
            NodeSpec(
                id=node.id,
                type=node.type,
                job_type=node.job_type,
                compensation=node.compensation,
                default=node.default,
                duration=node.duration,
            )
            for node in message.nodes
        ),
        flows=tuple(
            FlowSpec(from_node=flow.from_node, to_node=flow.to_node, condition=flow.condition)
            for flow in message.flows
        ),
    )


class DefinitionsService(pb_grpc.DefinitionsServiceServicer):
    def __init__(
        self, store: OrchestraStore, tokens: PageTokens, wall: Callable[[], float]
    ) -> None:
        self._store = store
        self._tokens = tokens
        self._wall = wall

    async def ListDefinitions(
        self, request: pb.ListDefinitionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListDefinitionsResponse:
        page = await definitions.list_definitions(
            self._store,
            self._tokens,
            definition_id=request.definition_id,
            limit=request.limit,
            continuation_token=request.continuation_token,
        )
        response = pb.ListDefinitionsResponse(
            items=[definition_message(record) for record in page.items]
        )
        if page.continuation_token is not None:
            response.continuation_token = page.continuation_token
        return response

    async def GetDefinition(
        self, request: pb.GetDefinitionRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetDefinitionResponse:
        record = await definitions.get_definition(
            self._store, request.definition_id, request.version
        )
        return pb.GetDefinitionResponse(definition=definition_message(record))

    async def PutDefinition(
        self, request: pb.PutDefinitionRequest, context: grpc.aio.ServicerContext
    ) -> pb.PutDefinitionResponse:
        spec = spec_of(request.definition, request.definition_id)
        stored = await definitions.put_definition(
            self._store,
            current_call(),
            spec,
            now=datetime.fromtimestamp(self._wall(), UTC),
            prefix=_PREFIX,
        )
        return pb.PutDefinitionResponse(
            definition=definition_message(stored.definition), created=stored.created
        )

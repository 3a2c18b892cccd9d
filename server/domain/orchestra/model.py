"""Process definitions as the engine reads them: the file format's values
(`DefinitionSpec`) and their compiled form (`ProcessModel`).

A `DefinitionSpec` is what a file, the admin API or the CLI says, unchecked; a
`ProcessModel` is a spec that passed `validation.compile_definition`: nodes by id,
each node's outgoing flows in file order, incoming counts (a parallel gateway with
more than one incoming flow joins), conditions compiled and timer durations
parsed. Versions are immutable, so a model is compiled once per stored version.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final

from server.domain.orchestra.cel_conditions import Condition

START, END = "start", "end"
USER_TASK, SERVICE_TASK, TIMER = "user_task", "service_task", "timer"
EXCLUSIVE_GATEWAY, PARALLEL_GATEWAY = "exclusive_gateway", "parallel_gateway"
NODE_TYPES: Final = (
    START,
    END,
    USER_TASK,
    SERVICE_TASK,
    EXCLUSIVE_GATEWAY,
    PARALLEL_GATEWAY,
    TIMER,
)


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One node as written; empty strings are absent fields."""

    id: str
    type: str
    job_type: str = ""
    compensation: str = ""
    default: str = ""
    duration: str = ""


@dataclass(frozen=True, slots=True)
class FlowSpec:
    """One flow as written; an empty condition is none."""

    from_node: str
    to_node: str
    condition: str = ""


@dataclass(frozen=True, slots=True)
class DefinitionSpec:
    """A definition as written. `version` 0 means "the next one" on a put; `tenant`
    None means shared by every tenant."""

    id: str
    version: int
    tenant: str | None
    nodes: tuple[NodeSpec, ...]
    flows: tuple[FlowSpec, ...]

    def document(self) -> dict[str, Any]:
        """The file format's JSON object, fields in the format's order, absent node
        and flow fields left out: what is stored and what the admin API answers."""
        return {
            "id": self.id,
            "version": self.version,
            "tenant": self.tenant,
            "nodes": [
                {
                    key: value
                    for key, value in (
                        ("id", node.id),
                        ("type", node.type),
                        ("job_type", node.job_type),
                        ("compensation", node.compensation),
                        ("default", node.default),
                        ("duration", node.duration),
                    )
                    if value or key in ("id", "type")
                }
                for node in self.nodes
            ],
            "flows": [
                {
                    key: value
                    for key, value in (
                        ("from", flow.from_node),
                        ("to", flow.to_node),
                        ("condition", flow.condition),
                    )
                    if value or key != "condition"
                }
                for flow in self.flows
            ],
        }

    def content(self) -> str:
        """Canonical JSON of everything but the version: equal content, equal text
        (how a repeated put of one version is recognised)."""
        document = self.document()
        document.pop("version")
        return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def spec_from_document(document: Mapping[str, Any]) -> DefinitionSpec:
    """The spec of a stored document (`DefinitionSpec.document`), trusted."""
    return DefinitionSpec(
        id=document["id"],
        version=int(document["version"]),
        tenant=document.get("tenant"),
        nodes=tuple(
            NodeSpec(
                id=node["id"],
                type=node["type"],
                job_type=node.get("job_type", ""),
                compensation=node.get("compensation", ""),
                default=node.get("default", ""),
                duration=node.get("duration", ""),
            )
            for node in document["nodes"]
        ),
        flows=tuple(
            FlowSpec(
                from_node=flow["from"], to_node=flow["to"], condition=flow.get("condition", "")
            )
            for flow in document["flows"]
        ),
    )


@dataclass(frozen=True, slots=True)
class Node:
    """A node of a compiled model."""

    id: str
    type: str
    job_type: str = ""
    compensation: str = ""  # service task: the job type that undoes it (sagas)
    default: str = ""  # exclusive gateway: the target node of its default flow
    duration: timedelta | None = None  # timer
    incoming: int = 0
    outgoing: tuple[Outgoing, ...] = field(default=())

    @property
    def joins(self) -> bool:
        """A parallel gateway with several incoming flows waits for one token of each."""
        return self.type == PARALLEL_GATEWAY and self.incoming > 1


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A flow as its source node sees it."""

    to_node: str
    condition: Condition | None = None


@dataclass(frozen=True, slots=True)
class ProcessModel:
    """A validated definition version, ready to run."""

    definition_id: str
    version: int
    tenant: str | None
    start: str  # the start node's id
    nodes: Mapping[str, Node]

    @property
    def saga(self) -> bool:
        """Whether its instances are sagas: some service task declares a compensation
        (domain/orchestra/sagas.py)."""
        return any(node.compensation for node in self.nodes.values())

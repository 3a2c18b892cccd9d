"""The load-time rules of process definitions (DESIGN §4.3, issue 11 point 1).

`parse_document` reads the file format (a YAML or JSON object) into a
`DefinitionSpec`, refusing wrong shapes; `compile_definition` checks a spec and
compiles it into a `ProcessModel`. Both raise one InvalidArgument listing every
violation, each naming the node or flow at fault ("node 'review': ..." or "flow
review -> route: ...") under the field it was found in (`nodes[2].type`, with the
caller's `prefix`, e.g. "definition." for the admin API).

The rules: an id of 1-64 letters, digits, '_', '.' or '-' starting with a letter;
a version from 0 (the next one) to 2^31 - 1; a tenant id or null; node ids unique;
known node types, each with the fields its type takes and no others; exactly one
start node, with no incoming flow; flows that name existing nodes, no flow twice;
start, tasks and timers have exactly one outgoing flow, end nodes none, gateways at
least one; conditions only on the flows of exclusive gateways, on every such flow
but the default one, compiling as CEL with known functions only; an exclusive
gateway's `default` names one of its flows' targets; every node reachable from the
start and able to reach an end (so no cycle that can never end); ISO 8601 timer
durations.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, Final

from server.domain.errors import ECHO_MAX, InvalidArgument, Violation, shown
from server.domain.jobs import validate_job_type
from server.domain.orchestra.cel_conditions import ConditionError, compile_condition
from server.domain.orchestra.durations import DurationError, parse_duration
from server.domain.orchestra.model import (
    END,
    EXCLUSIVE_GATEWAY,
    NODE_TYPES,
    PARALLEL_GATEWAY,
    SERVICE_TASK,
    START,
    TIMER,
    USER_TASK,
    DefinitionSpec,
    FlowSpec,
    Node,
    NodeSpec,
    Outgoing,
    ProcessModel,
)

DEFINITION_ID_PATTERN: Final = r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$"
DEFINITION_ID_RULE: Final = "must be 1-64 letters, digits, '_', '.' or '-', starting with a letter"
NODE_ID_RULE: Final = DEFINITION_ID_RULE
# The tenant id rule of X-Stella-Tenant (server/interceptors/tenancy.py), one pattern.
TENANT_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
VERSION_MAX: Final = 2**31 - 1
MAX_NODES: Final = 1000
MAX_FLOWS: Final = 4000
_ID = re.compile(DEFINITION_ID_PATTERN)
_TENANT = re.compile(TENANT_PATTERN)
_NODE_FIELDS: Final = ("id", "type", "job_type", "compensation", "default", "duration")
_FLOW_FIELDS: Final = ("from", "to", "condition")
_DEFINITION_FIELDS: Final = ("id", "version", "tenant", "nodes", "flows")
# The optional fields each node type takes (id and type always).
_TYPE_FIELDS: Final[Mapping[str, frozenset[str]]] = {
    SERVICE_TASK: frozenset({"job_type", "compensation"}),
    EXCLUSIVE_GATEWAY: frozenset({"default"}),
    TIMER: frozenset({"duration"}),
}
# Node types with exactly one outgoing flow.
_ONE_OUT: Final = frozenset({START, "user_task", SERVICE_TASK, TIMER})


def valid_definition_id(value: str) -> bool:
    return bool(_ID.fullmatch(value))


def parse_document(document: Any, *, prefix: str = "") -> DefinitionSpec:
    """The spec a loaded YAML/JSON document describes. Raises InvalidArgument naming
    every field of the wrong type, unknown or missing (not the graph rules: those
    are `compile_definition`'s)."""
    violations: list[Violation] = []

    def bad(field: str, description: str) -> None:
        violations.append(Violation(f"{prefix}{field}", description))

    if not isinstance(document, Mapping):
        raise InvalidArgument.of(
            prefix.rstrip(".") or "definition", f"must be an object, got {_kind(document)}"
        )
    for key in document:
        if key not in _DEFINITION_FIELDS:
            bad(
                str(key),
                f"is not a field of a definition (fields: {', '.join(_DEFINITION_FIELDS)})",
            )
    definition_id = _string(document, "id", "", bad, required=True)
    version = document.get("version", 0)
    if version is None:
        version = 0
    if type(version) is not int:
        bad("version", f"must be an integer, got {_kind(version)}")
        version = 0
    tenant = document.get("tenant")
    if tenant is not None and not isinstance(tenant, str):
        bad("tenant", f"must be a tenant id or null, got {_kind(tenant)}")
        tenant = None
    nodes: list[NodeSpec] = []
    raw_nodes = document.get("nodes")
    if not isinstance(raw_nodes, list):
        bad("nodes", f"must be a list of nodes, got {_kind(raw_nodes)}")
        raw_nodes = []
    for i, raw in enumerate(raw_nodes):
        where = f"nodes[{i}]"
        if not isinstance(raw, Mapping):
            bad(where, f"must be an object, got {_kind(raw)}")
            continue
        for key in raw:
            if key not in _NODE_FIELDS:
                bad(
                    f"{where}.{key}",
                    f"is not a field of a node (fields: {', '.join(_NODE_FIELDS)})",
                )
        values = {name: _string(raw, name, f"{where}.", bad) for name in _NODE_FIELDS}
        nodes.append(NodeSpec(**values))
    flows: list[FlowSpec] = []
    raw_flows = document.get("flows")
    if not isinstance(raw_flows, list):
        bad("flows", f"must be a list of flows, got {_kind(raw_flows)}")
        raw_flows = []
    for i, raw in enumerate(raw_flows):
        where = f"flows[{i}]"
        if not isinstance(raw, Mapping):
            bad(where, f"must be an object, got {_kind(raw)}")
            continue
        for key in raw:
            if key not in _FLOW_FIELDS:
                bad(
                    f"{where}.{key}",
                    f"is not a field of a flow (fields: {', '.join(_FLOW_FIELDS)})",
                )
        flows.append(
            FlowSpec(
                from_node=_string(raw, "from", f"{where}.", bad),
                to_node=_string(raw, "to", f"{where}.", bad),
                condition=_string(raw, "condition", f"{where}.", bad),
            )
        )
    if violations:
        raise InvalidArgument.from_violations(violations, reason="DEFINITION_INVALID")
    return DefinitionSpec(
        id=definition_id, version=version, tenant=tenant, nodes=tuple(nodes), flows=tuple(flows)
    )


def _string(
    raw: Mapping[str, Any], name: str, where: str, bad: Any, *, required: bool = False
) -> str:
    value = raw.get(name)
    if value is None:
        if required:
            bad(f"{where}{name}", "is required")
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        bad(f"{where}{name}", f"must be a string, got {_kind(value)}")
        return ""
    # YAML reads `condition: true` or `id: 1` as scalars; their text is what was meant.
    return value if isinstance(value, str) else str(value)


def _excerpt(node_id: str) -> str:
    """A node id as a flow's name shows it unquoted: whole up to ECHO_MAX characters,
    else cut with "…" (errors.shown's quote does the same for quoted ids)."""
    return node_id if len(node_id) <= ECHO_MAX else node_id[:ECHO_MAX] + "…"


def compile_definition(spec: DefinitionSpec, *, prefix: str = "") -> ProcessModel:
    """The runnable model of `spec`. Raises InvalidArgument (reason DEFINITION_INVALID)
    listing every rule the spec breaks, each naming its node or flow."""
    violations: list[Violation] = []

    def bad(field: str, description: str) -> None:
        violations.append(Violation(f"{prefix}{field}", description))

    if not _ID.fullmatch(spec.id):
        bad("id", DEFINITION_ID_RULE)
    if not 0 <= spec.version <= VERSION_MAX:
        bad("version", f"must be from 0 (the next version) to {VERSION_MAX}, got {spec.version}")
    if spec.tenant is not None and not _TENANT.fullmatch(spec.tenant):
        bad("tenant", "must be null (shared) or a tenant id: 1-64 letters, digits, '.', '_' or '-'")
    if not spec.nodes:
        bad("nodes", "must list at least a start and an end node")
    if len(spec.nodes) > MAX_NODES:
        bad("nodes", f"must be at most {MAX_NODES} nodes, got {len(spec.nodes)}")
    if len(spec.flows) > MAX_FLOWS:
        bad("flows", f"must be at most {MAX_FLOWS} flows, got {len(spec.flows)}")
    if violations:  # the graph rules below would only repeat these
        raise InvalidArgument.from_violations(violations, reason="DEFINITION_INVALID")

    index: dict[str, int] = {}
    for i, node in enumerate(spec.nodes):
        _check_node(i, node, index, bad)
    starts = [node.id for node in spec.nodes if node.type == START]
    if len(starts) != 1:
        found = ", ".join(repr(s) for s in starts) or "none"
        bad("nodes", f"must have exactly one start node, found {found}")
    if not any(node.type == END for node in spec.nodes):
        bad("nodes", "must have at least one end node")

    outgoing: dict[str, list[tuple[int, FlowSpec]]] = {node.id: [] for node in spec.nodes}
    incoming: dict[str, int] = {node.id: 0 for node in spec.nodes}
    seen: set[tuple[str, str]] = set()
    for i, flow in enumerate(spec.flows):
        where = f"flows[{i}]"
        name = f"flow {_excerpt(flow.from_node) or '?'} -> {_excerpt(flow.to_node) or '?'}"
        dangling = False
        for end, value in (("from", flow.from_node), ("to", flow.to_node)):
            if not value:
                bad(f"{where}.{end}", f"{name}: '{end}' is required")
                dangling = True
            elif value not in index:
                bad(f"{where}.{end}", f"{name}: names no node {shown(value)}")
                dangling = True
        if dangling:
            continue
        if (flow.from_node, flow.to_node) in seen:
            bad(where, f"{name}: appears twice")
            continue
        seen.add((flow.from_node, flow.to_node))
        outgoing[flow.from_node].append((i, flow))
        incoming[flow.to_node] += 1

    nodes: dict[str, Node] = {}
    for i, spec_node in enumerate(spec.nodes):
        if spec_node.type not in NODE_TYPES or index.get(spec_node.id) != i:
            continue
        compiled = _compile_node(i, spec_node, outgoing[spec_node.id], incoming[spec_node.id], bad)
        nodes[compiled.id] = compiled

    if len(starts) == 1 and not violations:
        _check_paths(spec, starts[0], outgoing, bad)
    if not violations:
        _check_busy_loops(spec, outgoing, bad)
    if violations:
        raise InvalidArgument.from_violations(violations, reason="DEFINITION_INVALID")
    return ProcessModel(
        definition_id=spec.id,
        version=spec.version,
        tenant=spec.tenant,
        start=starts[0],
        nodes=nodes,
    )


def _check_node(i: int, node: NodeSpec, index: dict[str, int], bad: Any) -> None:
    where = f"nodes[{i}]"
    label = f"node {shown(node.id)}" if node.id else f"node #{i}"
    if not node.id:
        bad(f"{where}.id", f"{label}: id is required")
    elif not _ID.fullmatch(node.id):
        bad(f"{where}.id", f"{label}: id {NODE_ID_RULE}")
    elif node.id in index:
        bad(f"{where}.id", f"{label}: id already used by nodes[{index[node.id]}]")
    else:
        index[node.id] = i
    if node.type not in NODE_TYPES:
        kind = f"unknown type {shown(node.type)}" if node.type else "type is required"
        bad(f"{where}.type", f"{label}: {kind}; known types: {', '.join(NODE_TYPES)}")
        return
    allowed = _TYPE_FIELDS.get(node.type, frozenset())
    for name in ("job_type", "compensation", "default", "duration"):
        if getattr(node, name) and name not in allowed:
            bad(f"{where}.{name}", f"{label}: a {node.type} node takes no {name}")
    if node.type == SERVICE_TASK:
        for name in ("job_type", "compensation"):
            value = getattr(node, name)
            if name == "job_type" and not value:
                bad(f"{where}.job_type", f"{label}: a service_task needs a job_type")
            elif value and (problem := validate_job_type(value, field=name)) is not None:
                bad(f"{where}.{name}", f"{label}: {name} {problem.description}")
    if node.type == TIMER:
        if not node.duration:
            bad(f"{where}.duration", f"{label}: a timer needs a duration (ISO 8601, e.g. PT5M)")
        else:
            try:
                parse_duration(node.duration)
            except DurationError as exc:
                bad(f"{where}.duration", f"{label}: duration {exc}")


def _compile_node(
    i: int, spec: NodeSpec, flows: Sequence[tuple[int, FlowSpec]], incoming: int, bad: Any
) -> Node:
    where = f"nodes[{i}]"
    label = f"node {shown(spec.id)}"
    count = len(flows)
    if spec.type == START and incoming:
        bad(where, f"{label}: the start node cannot have incoming flows")
    if spec.type == END and count:
        bad(where, f"{label}: an end node cannot have outgoing flows")
    if spec.type in _ONE_OUT and count != 1:
        bad(where, f"{label}: a {spec.type} needs exactly one outgoing flow, has {count}")
    if spec.type in (EXCLUSIVE_GATEWAY, PARALLEL_GATEWAY) and count == 0:
        bad(where, f"{label}: a gateway needs at least one outgoing flow")
    targets = [flow.to_node for _, flow in flows]
    if spec.type == EXCLUSIVE_GATEWAY and spec.default and spec.default not in targets:
        bad(
            f"{where}.default",
            f"{label}: default {shown(spec.default)} is not the target of one of its flows",
        )
    outgoing: list[Outgoing] = []
    for j, flow in flows:
        name = f"flow {flow.from_node} -> {flow.to_node}"
        condition = None
        if spec.type != EXCLUSIVE_GATEWAY:
            if flow.condition:
                bad(
                    f"flows[{j}].condition",
                    f"{name}: only flows leaving an exclusive_gateway take a condition",
                )
        elif flow.to_node == spec.default:
            if flow.condition:
                bad(
                    f"flows[{j}].condition",
                    f"{name}: the default flow of node {shown(spec.id)} takes no condition",
                )
        elif not flow.condition:
            bad(
                f"flows[{j}].condition",
                f"{name}: leaves exclusive_gateway {shown(spec.id)} and is not its default,"
                " so it needs a condition",
            )
        else:
            try:
                condition = compile_condition(flow.condition)
            except ConditionError as exc:
                bad(f"flows[{j}].condition", f"{name} (node {shown(spec.id)}): {exc}")
        outgoing.append(Outgoing(to_node=flow.to_node, condition=condition))
    # The default flow is tried last, whatever its place in the file.
    outgoing.sort(key=lambda item: item.to_node == spec.default and spec.type == EXCLUSIVE_GATEWAY)
    return Node(
        id=spec.id,
        type=spec.type,
        job_type=spec.job_type,
        compensation=spec.compensation if spec.type == SERVICE_TASK else "",
        default=spec.default,
        duration=parse_duration(spec.duration)
        if spec.type == TIMER and _parses(spec.duration)
        else None,
        incoming=incoming,
        outgoing=tuple(outgoing),
    )


def _parses(text: str) -> bool:
    try:
        parse_duration(text)
    except DurationError:
        return False
    return True


def _check_paths(
    spec: DefinitionSpec, start: str, outgoing: Mapping[str, list[tuple[int, FlowSpec]]], bad: Any
) -> None:
    """Every node reachable from the start, and every node able to reach an end."""
    reached = _closure([start], lambda node: [flow.to_node for _, flow in outgoing[node]])
    reverse: dict[str, list[str]] = {node.id: [] for node in spec.nodes}
    for node_id, flows in outgoing.items():
        for _, flow in flows:
            reverse[flow.to_node].append(node_id)
    ends = [node.id for node in spec.nodes if node.type == END]
    ending = _closure(ends, lambda node: reverse[node])
    for i, node in enumerate(spec.nodes):
        if node.id not in reached:
            bad(
                f"nodes[{i}]",
                f"node {shown(node.id)}: is not reachable from the start node {shown(start)}",
            )
        elif node.id not in ending:
            bad(
                f"nodes[{i}]",
                f"node {shown(node.id)}: no path leads from it to an end node"
                " (a cycle that never ends, or a dead end)",
            )


_WAITING: Final = frozenset({USER_TASK, SERVICE_TASK, TIMER})


def _check_busy_loops(
    spec: DefinitionSpec, outgoing: Mapping[str, list[tuple[int, FlowSpec]]], bad: Any
) -> None:
    """No loop made only of gateways: a token on one would move without ever waiting
    (each pass a step and its events) until the step limit fails the instance. A loop
    through a user task, service task or timer is a legitimate retry or review loop."""
    busy = {node.id for node in spec.nodes if node.type not in _WAITING}
    successors = {
        node_id: {flow.to_node for _, flow in outgoing[node_id] if flow.to_node in busy}
        for node_id in busy
    }
    # Peel nodes that start or end no busy path; what is left lies on or between loops.
    left = set(busy)
    changed = True
    while changed:
        entered = {nxt for node_id in left for nxt in successors[node_id] if nxt in left}
        kept = {n for n in left if n in entered and successors[n] & left}
        changed, left = kept != left, kept
    looped = {
        node_id
        for node_id in left
        if node_id in _closure(sorted(successors[node_id] & left), lambda n: successors[n] & left)
    }
    for i, node in enumerate(spec.nodes):
        if node.id in looped:
            bad(
                f"nodes[{i}]",
                f"node {shown(node.id)}: is on a loop with no user task, service task or timer"
                " (a token would move around it without ever waiting)",
            )


def _closure(roots: Sequence[str], step: Any) -> set[str]:
    seen = set(roots)
    queue = deque(roots)
    while queue:
        for nxt in step(queue.popleft()):
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return seen


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__

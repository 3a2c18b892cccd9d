"""One step of a process instance, pure: tokens moving over the nodes of a model.

A step starts with tokens arriving at nodes (the start node when an instance
starts; the targets of a node's outgoing flows when a parked or waiting token is
released) and moves each arrival on until it rests or ends:

- `start`, `parallel_gateway` (not joining): on along every outgoing flow (a fork
  when there are several);
- `end`: the token ends;
- `user_task`: the token rests `parked` until it is signalled;
- `service_task`: the token rests `waiting` for the job the caller enqueues for it;
- `timer`: the token rests `waiting` until `now + duration`;
- `exclusive_gateway`: on along the first flow (file order, the default last)
  whose condition holds over the variables; a condition's runtime error, or no
  flow to take, is an incident;
- `parallel_gateway` with several incoming flows (a join): the token rests
  `waiting` until as many tokens as the gateway has incoming flows are there;
  the last one to arrive consumes the others and goes on along every outgoing flow.

Every node a token enters is an event (`orchestra.token.entered`). A step moves at
most `MAX_MOVES` times (a loop of gateways whose conditions never let go is an
incident, not a hung server). The caller persists the outcome in one transaction:
resting tokens inserted, consumed tokens deleted, events appended, the instance
completed when no token is left, failed when there is an incident.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Protocol

from server.domain.orchestra.cel_conditions import Budget, ConditionError
from server.domain.orchestra.model import (
    END,
    EXCLUSIVE_GATEWAY,
    PARALLEL_GATEWAY,
    SERVICE_TASK,
    START,
    TIMER,
    USER_TASK,
    ProcessModel,
)

MAX_MOVES: Final = 10_000
PARKED, WAITING = "parked", "waiting"
# Incident kinds (instance.proto Incident.kind).
CONDITION_ERROR = "condition_error"
NO_FLOW = "no_flow"
STEP_LIMIT = "step_limit"
JOB_DEAD_LETTERED = "job_dead_lettered"
JOB_CANCELED = "job_canceled"
JOB_REFUSED = "job_refused"
JOB_RESULT_REJECTED = "job_result_rejected"

ENTERED_EVENT = "orchestra.token.entered"


class LiveToken(Protocol):
    """A token at rest, as stored."""

    @property
    def token_id(self) -> str: ...
    @property
    def node_id(self) -> str: ...
    @property
    def status(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Resting:
    """A token that came to rest in this step: to insert. `job_type` for a service
    task (the caller enqueues the job), `due_at` for a timer."""

    token_id: str
    node_id: str
    status: str
    job_type: str | None = None
    due_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class IncidentInfo:
    kind: str
    node_id: str
    token_id: str
    message: str
    job_id: str | None = None


@dataclass(slots=True)
class StepOutcome:
    """What a step did: tokens to insert (`resting`), stored tokens it consumed (a
    join's), events `(type, data)` in order, an incident (the instance fails) and
    whether no token is left (the instance completes)."""

    resting: list[Resting] = field(default_factory=list)
    consumed: list[str] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    incident: IncidentInfo | None = None
    finished: bool = False


def advance(
    model: ProcessModel,
    variables: Mapping[str, Any],
    live: Sequence[LiveToken],
    arrivals: Sequence[str],
    *,
    now: datetime,
    new_id: Callable[[], str],
) -> StepOutcome:
    """Move tokens arriving at `arrivals` (node ids) until each rests or ends. `live`
    are the instance's other tokens at rest (joins count those waiting at them)."""
    outcome = StepOutcome()
    waiting: dict[str, list[str]] = {}  # join node -> tokens waiting there, oldest first
    for token in live:
        node = model.nodes.get(token.node_id)
        if node is not None and node.joins and token.status == WAITING:
            waiting.setdefault(token.node_id, []).append(token.token_id)
    resting_ids: set[str] = set()
    queue = deque(arrivals)
    moves = 0
    # The variables do not change within a step: their CEL values and the time for
    # conditions (cel_conditions.TIME_LIMIT_S) are shared by all its gateways.
    conditions = _Conditions({}, Budget())
    while queue:
        node_id = queue.popleft()
        node = model.nodes[node_id]
        token_id = new_id()
        moves += 1
        if moves > MAX_MOVES:
            outcome.incident = IncidentInfo(
                STEP_LIMIT,
                node_id,
                token_id,
                f"more than {MAX_MOVES} moves in one step: a loop whose conditions never let go",
            )
            return outcome
        outcome.events.append(
            (ENTERED_EVENT, {"token_id": token_id, "node_id": node_id, "node_type": node.type})
        )
        if node.type in (START, PARALLEL_GATEWAY) and not node.joins:
            queue.extend(flow.to_node for flow in node.outgoing)
        elif node.type == END:
            continue
        elif node.type == USER_TASK:
            outcome.resting.append(Resting(token_id, node_id, PARKED))
            resting_ids.add(token_id)
        elif node.type == SERVICE_TASK:
            outcome.resting.append(Resting(token_id, node_id, WAITING, job_type=node.job_type))
            resting_ids.add(token_id)
        elif node.type == TIMER:
            assert node.duration is not None  # validated at load
            outcome.resting.append(Resting(token_id, node_id, WAITING, due_at=now + node.duration))
            resting_ids.add(token_id)
        elif node.type == EXCLUSIVE_GATEWAY:
            target, incident = _choose(node.id, node.outgoing, variables, token_id, conditions)
            if incident is not None:
                outcome.incident = incident
                return outcome
            queue.append(target)
        elif node.joins:
            arrived = waiting.setdefault(node_id, [])
            if len(arrived) + 1 < node.incoming:
                arrived.append(token_id)
                outcome.resting.append(Resting(token_id, node_id, WAITING))
                resting_ids.add(token_id)
                continue
            partners = arrived[: node.incoming - 1]
            del arrived[: node.incoming - 1]
            for partner in partners:
                if partner in resting_ids:
                    resting_ids.discard(partner)
                    outcome.resting = [r for r in outcome.resting if r.token_id != partner]
                else:
                    outcome.consumed.append(partner)
            queue.extend(flow.to_node for flow in node.outgoing)
    left = len(live) - len(outcome.consumed) + len(outcome.resting)
    outcome.finished = left == 0
    return outcome


@dataclass(frozen=True, slots=True)
class _Conditions:
    """What the conditions of one step share: the variables as CEL values, by name,
    and the time left to evaluate them."""

    converted: dict[str, Any]
    budget: Budget


def _choose(
    node_id: str,
    outgoing: Sequence[Any],
    variables: Mapping[str, Any],
    token_id: str,
    conditions: _Conditions,
) -> tuple[str, IncidentInfo | None]:
    """The target of the first flow whose condition holds (the default, which has none,
    is last); an incident for a failing condition or no flow to take."""
    for flow in outgoing:
        if flow.condition is None:
            return flow.to_node, None
        try:
            if flow.condition.evaluate(variables, conditions.converted, conditions.budget):
                return flow.to_node, None
        except ConditionError as exc:
            return "", IncidentInfo(CONDITION_ERROR, node_id, token_id, str(exc))
    return "", IncidentInfo(
        NO_FLOW,
        node_id,
        token_id,
        f"exclusive_gateway {node_id!r}: no condition holds and it has no default flow",
    )

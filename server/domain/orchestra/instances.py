"""Process instances: the cross-site operations (seed 004) and the engine's own moves
(DESIGN §9; issue 11 point 2).

Every step is one unit of work that locks the instance row first (so the steps of
one instance never interleave), takes the token it moves with a conditional DELETE
(so a signal, a timer firing or a job ending counts once: of two concurrent signals
of one token exactly one takes it, the other is FAILED_PRECONDITION
TOKEN_NOT_PARKED), runs `engine.advance`, and writes the result with its events
(subject `orchestra-instances/{id}`): resting tokens, the jobs of service tasks
(enqueued through the job engine in the same transaction, payload the variables),
the instance's status and variables. A failed call leaves nothing behind.

Tenancy: every read and write is by the caller's tenant (its binding); another
tenant's instance or token answers exactly as an absent one.

Service tasks. A token waiting for a job moves when the job ends: `succeeded`
merges the job's result into the variables (an object's members; any other
non-null value becomes the variable `result`) and moves on; `dead_lettered` or
`canceled` fails the instance with an incident. The job engine's ending hints wake
the reconciler at once; its poll finds what the hints missed (another replica's
completion, a restart): `reconcile_job_endings`. Timers: `fire_due_timers` moves
tokens whose `due_at` passed. Both claim the instance with SKIP LOCKED (PostgreSQL)
and the token with the conditional DELETE, so any number of replicas can run them
and nothing moves twice.

Incidents (a condition's runtime error, no flow to take, a dead-lettered job, a job
the job engine refused, a result that cannot be merged, a step that never rests)
fail the instance: status `failed`, the incident recorded on it, every token
dropped and the unfinished jobs they waited for canceled (so does a cancel). They
never fail the call that caused them.

Traces. An instance keeps the trace of the call that started it (its trace id and
the traceparent of that call's span; migration 0014): the engine's own moves (a job
ended, a timer fired, a compensation ended) run in it, so their events carry the
run's trace id, their `orchestra.step` spans are children of the start call's span,
and the jobs they enqueue (and those jobs' transitions) are in the run's trace. A
call that moves an instance itself (a signal, a cancel) is its own trace, as every
call: its events carry that call's trace id.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final

from gateway.text import has_control
from server.domain import audit
from server.domain.context import CallContext
from server.domain.errors import (
    Aborted,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    shown,
)
from server.domain.events import NewEvent
from server.domain.job_states import EVENT_TYPES as JOB_EVENT_TYPES
from server.domain.job_states import FINISHED, JobAction, JobStatus
from server.domain.jobs import EnqueueRequest, JobLimits, enqueue_within, validate_enqueue
from server.domain.orchestra import engine, sagas, variables
from server.domain.orchestra.definitions import ModelCache, available_to
from server.domain.orchestra.engine import IncidentInfo, StepOutcome
from server.domain.orchestra.model import ProcessModel
from server.domain.orchestra.records import (
    ACTIVE_STATUSES,
    CANCELED,
    COMPLETED,
    DEFINITION,
    FAILED,
    INSTANCE,
    RUNNING,
    TOKEN,
    Instance,
    InstanceRecord,
    InstanceSummaryRecord,
    OrchestraStore,
    OrchestraUnit,
    Pending,
    Token,
    TokenRecord,
)
from server.domain.orchestra.validation import valid_definition_id
from server.domain.resources import JOB, ResourceType
from server.domain.tracing import current_traceparent, resumed, traced

SIGNALLED: Final = "signalled"
SET: Final = "set"
ENGINE_METHOD: Final = "/orchestrator.orchestra.v1.Engine/Step"  # the engine's own calls
OWNER_PREFIX: Final = "orchestra-tokens"
JOB_ENDED: Final = ("succeeded", "dead_lettered", "canceled")
# Instances one engine pass moves on at once where writes run in parallel (each holds
# a pooled connection meanwhile; the PostgreSQL pool keeps 20).
RELEASE_CONCURRENCY: Final = 8
_ID_MAX = 64

# Event types (registered in server/domain/events.py EVENT_TYPES).
STARTED_EVENT = "orchestra.instance.started"
COMPLETED_EVENT = "orchestra.instance.completed"
FAILED_EVENT = "orchestra.instance.failed"
CANCELED_EVENT = "orchestra.instance.canceled"
VARIABLES_EVENT = "orchestra.variables.set"
PARKED_EVENT = "orchestra.token.parked"
WAITING_EVENT = "orchestra.token.waiting"
SIGNALLED_EVENT = "orchestra.token.signalled"
TIMER_EVENT = "orchestra.token.timer_fired"
JOB_EVENT = "orchestra.token.job_ended"
INCIDENT_EVENT = "orchestra.incident"
EVENT_TYPES: Final = frozenset(
    {
        STARTED_EVENT,
        COMPLETED_EVENT,
        FAILED_EVENT,
        CANCELED_EVENT,
        VARIABLES_EVENT,
        PARKED_EVENT,
        WAITING_EVENT,
        SIGNALLED_EVENT,
        TIMER_EVENT,
        JOB_EVENT,
        INCIDENT_EVENT,
        engine.ENTERED_EVENT,
        *sagas.EVENT_TYPES,
    }
)


@dataclass(frozen=True, slots=True)
class OrchestraLimits:
    """The configured caps (server/config.py)."""

    variables_max_bytes: int = variables.MAX_BYTES_DEFAULT
    job_payload_max_bytes: int = 64 * 1024


@dataclass(frozen=True, slots=True)
class InstanceView:
    instance: InstanceRecord
    tokens: Sequence[TokenRecord]


def engine_call(tenant_id: str, trace_id: str | None = None) -> CallContext:
    """The call context of the engine's own moves (timers, job endings), in the trace
    of the instance's run (`trace_id`: the start call's; none for older instances)."""
    return CallContext(
        method=ENGINE_METHOD, trace_id=trace_id or "", actor="orchestra", tenant_id=tenant_id
    )


def _new_id() -> str:
    return str(uuid.uuid4())


def _usable_id(value: str) -> bool:
    """Ids the server issues are uuid4 text; anything longer cannot exist (and bytes a
    database refuses, NUL for PostgreSQL, never reach it)."""
    return 0 < len(value) <= _ID_MAX and "\x00" not in value


# --- the cross-site operations -------------------------------------------------------


async def start_process(
    store: OrchestraStore,
    models: ModelCache,
    call: CallContext,
    definition_id: str,
    initial: Mapping[str, Any] | None,
    limits: OrchestraLimits,
    *,
    now: datetime,
    audit_as: ResourceType[Any] | None = None,
) -> str:
    """Start an instance of the latest version of `definition_id` available to the
    caller's tenant and run it until it rests; the instance id. With `audit_as`, the
    start is audited as creating that resource (the new `Instance`) in the same unit
    of work (an operator action such as POST /workflows/run). Raises NotFound
    (PROCESS_DEFINITION_NOT_FOUND: absent or another tenant's), InvalidArgument
    (variable names, size cap) and, when the job engine refuses a job of the first
    step, its error (`_start_refused`: e.g. FailedPrecondition SOURCE_PAUSED for the
    tenant's paused "orchestra" source); nothing is written then."""
    tenant_id = call.require_tenant()
    initial = dict(initial or {})
    variables.check_names(initial, "variables")
    text = variables.encode(initial, limits.variables_max_bytes, "variables")
    async with store.transaction() as unit:
        record = None
        if valid_definition_id(definition_id):
            record = await unit.orchestra.definition(definition_id, None)
        if record is None or not available_to(record, tenant_id):
            raise NotFound.of(DEFINITION, definition_id)
        model = models.model(record)
        instance = Instance(
            instance_id=_new_id(),
            tenant_id=tenant_id,
            definition_id=record.definition_id,
            definition_version=record.version,
            status=RUNNING,
            variables=text,
            incident=None,
            created_at=now,
            updated_at=now,
            saga=model.saga,
            trace_id=call.trace_id or None,
            trace_parent=current_traceparent(),  # the start call's span: later steps' parent
        )
        events = [
            _event(
                instance,
                call,
                STARTED_EVENT,
                {"definition_id": record.definition_id, "version": record.version},
                now,
            )
        ]
        if initial:
            events.append(_event(instance, call, VARIABLES_EVENT, {"names": sorted(initial)}, now))
        wake = await _step(
            unit, call, model, instance, initial, [], [model.start], events, limits, now, new=True
        )
        if audit_as is not None:
            await audit.record(unit.base, call, audit_as, before=None, after=instance)
    _announce(store, wake)
    return instance.instance_id


CANCEL_REASON_MAX: Final = 256  # characters, as a quota's pause reason
LIST_MAX = 10_000  # seed 004's list has no paging: one answer stays bounded (~2 MB)


async def list_instances(
    store: OrchestraStore,
    call: CallContext,
    *,
    definition_id: str,
    status: str,
    limit: int = LIST_MAX,
) -> Sequence[InstanceSummaryRecord]:
    """The tenant's `limit` newest instances (at most LIST_MAX: the seed's bare array
    has no paging, so the filters narrow it); exact filters, a value no instance has
    matches nothing. One with a control character is not sent to the database
    (PostgreSQL refuses a NUL in text): no instance has it."""
    if has_control(definition_id) or has_control(status):
        return []
    return await store.orchestra.instances(
        call.require_tenant(),
        definition_id=definition_id or None,
        status=status or None,
        limit=limit,
    )


async def get_instance(store: OrchestraStore, call: CallContext, instance_id: str) -> InstanceView:
    """The instance with its live tokens. Raises NotFound (INSTANCE_NOT_FOUND) when absent
    or another tenant's."""
    found = None
    if _usable_id(instance_id):
        found = await store.orchestra.instance_with_tokens(call.require_tenant(), instance_id)
    if found is None:
        raise _no_instance(instance_id)
    return InstanceView(*found)


async def get_variables(
    store: OrchestraStore, call: CallContext, instance_id: str
) -> dict[str, Any]:
    """The instance's variables; empty for an instance that is absent or not the
    tenant's (seed 004)."""
    if not _usable_id(instance_id):
        return {}
    instance = await store.orchestra.instance(call.require_tenant(), instance_id)
    if instance is None:
        return {}
    loaded: dict[str, Any] = json.loads(instance.variables)
    return loaded


async def set_variable(
    store: OrchestraStore,
    call: CallContext,
    instance_id: str,
    name: str,
    value: Any,
    limits: OrchestraLimits,
    *,
    now: datetime,
) -> str:
    """Create or replace one variable of a running instance; "set". Raises
    InvalidArgument (the name, the size cap), NotFound (INSTANCE_NOT_FOUND),
    FailedPrecondition (INSTANCE_NOT_RUNNING)."""
    tenant_id = call.require_tenant()
    if not variables.valid_name(name):
        raise InvalidArgument.of(
            "name",
            f"variable name {shown(name)} {variables.NAME_RULE}",
            reason="VARIABLE_NAME_INVALID",
        )
    if not _usable_id(instance_id):
        raise _no_instance(instance_id)
    async with store.transaction() as unit:
        instance = await unit.orchestra.lock_instance(tenant_id, instance_id)
        if instance is None:
            raise _no_instance(instance_id)
        _require_running(instance)
        values: dict[str, Any] = json.loads(instance.variables)
        values[name] = value
        text = variables.encode(values, limits.variables_max_bytes, "value")
        await unit.orchestra.update_instance(
            instance_id, status=RUNNING, variables=text, incident=None, now=now
        )
        await unit.base.events.append_many(
            [_event(instance, call, VARIABLES_EVENT, {"names": [name]}, now)]
        )
    return SET


async def signal_token(
    store: OrchestraStore,
    models: ModelCache,
    call: CallContext,
    token_id: str,
    merge: Mapping[str, Any] | None,
    limits: OrchestraLimits,
    *,
    now: datetime,
) -> str:
    """Signal a parked token: merge `merge` into the variables, move the token on and
    run the instance until it rests; "signalled". Raises NotFound (TOKEN_NOT_FOUND:
    absent or another tenant's), FailedPrecondition (TOKEN_NOT_PARKED: waiting, moved
    on, or its instance no longer running; the loser of two concurrent signals) and
    InvalidArgument (variable names, size cap)."""
    tenant_id = call.require_tenant()
    merge = dict(merge or {})
    variables.check_names(merge, "variables")
    async with store.transaction() as unit:
        token = await unit.orchestra.token(tenant_id, token_id) if _usable_id(token_id) else None
        if token is None:
            raise NotFound.of(TOKEN, token_id)
        if token.status != engine.PARKED:
            raise _not_parked(token_id, f"it is {token.status} at node {token.node_id!r}")
        instance = await unit.orchestra.lock_instance(tenant_id, token.instance_id)
        if instance is None or instance.status != RUNNING:
            status = instance.status if instance is not None else "gone"
            raise _not_parked(token_id, f"its instance is {status}")
        if not await unit.orchestra.take_token(token_id, engine.PARKED):
            raise _not_parked(token_id, "it was signalled or moved on already")
        model = await _model(unit, models, instance)
        values: dict[str, Any] = json.loads(instance.variables)
        values.update(merge)
        variables.encode(values, limits.variables_max_bytes, "variables")
        live = await unit.orchestra.tokens(instance.instance_id)
        events = [
            _event(
                instance,
                call,
                SIGNALLED_EVENT,
                {"token_id": token_id, "node_id": token.node_id},
                now,
            )
        ]
        if merge:
            events.append(_event(instance, call, VARIABLES_EVENT, {"names": sorted(merge)}, now))
        arrivals = [flow.to_node for flow in model.nodes[token.node_id].outgoing]
        wake = await _step(unit, call, model, instance, values, live, arrivals, events, limits, now)
    _announce(store, wake)
    return SIGNALLED


async def cancel_instance(
    store: OrchestraStore, call: CallContext, instance_id: str, reason: str, *, now: datetime
) -> InstanceView:
    """Cancel a running instance: every token dropped, status canceled. A canceled
    instance is answered unchanged. A compensating saga stops compensating: its
    running compensation's job is canceled, the compensations not finished are
    canceled (domain/orchestra/sagas.py). Raises NotFound (INSTANCE_NOT_FOUND) and
    FailedPrecondition (INSTANCE_NOT_RUNNING: completed, compensated or failed), and
    InvalidArgument for a reason over CANCEL_REASON_MAX characters or with a control
    character (it is one line of the cancel event; a 1 MB one was stored whole)."""
    tenant_id = call.require_tenant()
    if len(reason) > CANCEL_REASON_MAX:
        raise InvalidArgument.of(
            "reason", f"must be at most {CANCEL_REASON_MAX} characters, got {len(reason)}"
        )
    if has_control(reason):
        raise InvalidArgument.of("reason", "must not contain control characters")
    if not _usable_id(instance_id):
        raise _no_instance(instance_id)
    wake: list[tuple[str, str]] = []
    async with store.transaction() as unit:
        instance = await unit.orchestra.lock_instance(tenant_id, instance_id)
        if instance is None:
            raise _no_instance(instance_id)
        if instance.status in ACTIVE_STATUSES:
            events: list[NewEvent] = []
            incident = None
            if instance.status == RUNNING:
                wake = await _cancel_jobs(unit, call, instance_id, now)
                if instance.saga:
                    await sagas.settle_steps(unit, instance_id, now)
                await unit.orchestra.delete_instance_tokens(instance_id)
            else:  # compensating: the incident it compensates for stays on it
                events, wake = await sagas.cancel(unit, call, instance, now)
                incident = instance.incident
            await unit.orchestra.update_instance(
                instance_id,
                status=CANCELED,
                variables=instance.variables,
                incident=incident,
                now=now,
            )
            data: dict[str, Any] = {"reason": reason} if reason else {}
            events.append(_event(instance, call, CANCELED_EVENT, data, now))
            await unit.base.events.append_many(events)
        elif instance.status != CANCELED:
            _require_running(instance)
    _announce(store, wake)
    return await get_instance(store, call, instance_id)


# --- the engine's own moves -----------------------------------------------------------


async def fire_due_timers(
    store: OrchestraStore, models: ModelCache, limits: OrchestraLimits, *, now: datetime, limit: int
) -> int:
    """Move on up to `limit` timer tokens due at `now`; how many this call moved."""
    due = await store.orchestra.due_timers(now, limit)
    return await _release_all(store, models, limits, due, now=now)


async def reconcile_job_endings(
    store: OrchestraStore,
    models: ModelCache,
    limits: OrchestraLimits,
    *,
    now: datetime,
    limit: int,
    job_ids: Sequence[str] | None = None,
) -> int:
    """Move on up to `limit` tokens whose job has ended (only those waiting for one of
    `job_ids` when given); how many this call moved."""
    ended = await store.orchestra.ended_jobs(limit, job_ids)
    return await _release_all(store, models, limits, ended, now=now)


async def _release_all(
    store: OrchestraStore,
    models: ModelCache,
    limits: OrchestraLimits,
    pendings: Sequence[Pending],
    *,
    now: datetime,
) -> int:
    """Move on every one of `pendings`; how many moved. The tokens of one instance go
    one after another (each takes its instance's row lock, which a sibling would skip
    and leave for a later pass); different instances go RELEASE_CONCURRENCY at a time,
    each in its own transaction. One after another, the engine's loop waited behind
    every request between two of its statements: under a steady stream of starts it
    moved ~25 tokens/s while the same server moved ~290/s once the starts stopped
    (bench/orchestra.py, PostgreSQL). On SQLite (one writer) they go one at a time.
    Every release runs to its end; the first failure is raised once all have."""
    by_instance: dict[str, list[Pending]] = {}
    for pending in pendings:
        by_instance.setdefault(pending.instance_id, []).append(pending)
    slots = asyncio.Semaphore(RELEASE_CONCURRENCY if store.parallel_writes else 1)

    async def release_each(group: list[Pending]) -> int:
        moved = 0
        async with slots:
            for pending in group:
                if await _release(store, models, limits, pending, engine.WAITING, now=now):
                    moved += 1
        return moved

    outcomes = await asyncio.gather(
        *(release_each(group) for group in by_instance.values()), return_exceptions=True
    )
    for outcome in outcomes:
        # Only errors: a release cancelled on its own (not this pass, which gather
        # would have raised) moved nothing, and its token waits for the next pass;
        # re-raised here, a CancelledError would have stopped the engine's loop.
        if isinstance(outcome, Exception):
            raise outcome
    return sum(outcome for outcome in outcomes if isinstance(outcome, int))


async def reconcile_compensation_endings(
    store: OrchestraStore, limits: OrchestraLimits, *, now: datetime, limit: int
) -> int:
    """Move on up to `limit` compensating sagas whose running compensation's job has
    ended (domain/orchestra/sagas.py); how many this call moved."""
    moved = 0
    job_limits = JobLimits(limits.job_payload_max_bytes)
    for ending in await store.orchestra.ended_compensations(limit):
        call = engine_call(ending.tenant_id, ending.trace_id)
        async with store.transaction() as unit:
            with resumed(ending.trace_parent):  # the run's trace
                outcome = await sagas.compensation_ended(unit, call, ending, job_limits, now)
            if outcome is None:
                continue
            instance = await unit.orchestra.lock_instance(ending.tenant_id, ending.instance_id)
            assert instance is not None  # locked by compensation_ended
            await unit.orchestra.update_instance(
                instance.instance_id,
                status=outcome.status,
                variables=instance.variables,
                incident=outcome.incident,
                now=now,
            )
            await unit.base.events.append_many(outcome.events)
        _announce(store, outcome.wake)
        moved += 1
    return moved


async def _release(
    store: OrchestraStore,
    models: ModelCache,
    limits: OrchestraLimits,
    pending: Pending,
    status: str,
    *,
    now: datetime,
) -> bool:
    """Take `pending`'s token (if no one else did) and move the instance on from it."""
    wake: list[tuple[str, str]] = []
    async with store.transaction() as unit:
        instance = await unit.orchestra.lock_instance(
            pending.tenant_id, pending.instance_id, skip_locked=True
        )
        if instance is None or instance.status != RUNNING:
            return False  # busy elsewhere (retried on the next pass) or already over
        call = engine_call(pending.tenant_id, instance.trace_id)  # in the run's trace
        tokens = await unit.orchestra.tokens(instance.instance_id)
        token = next((t for t in tokens if t.token_id == pending.token_id), None)
        if token is None or not await unit.orchestra.take_token(pending.token_id, status):
            return False
        model = await _model(unit, models, instance)
        values: dict[str, Any] = json.loads(instance.variables)
        live = [t for t in tokens if t.token_id != pending.token_id]
        node = model.nodes[token.node_id]
        events: list[NewEvent] = []
        incident: IncidentInfo | None = None
        if pending.job_id is None:
            events.append(
                _event(
                    instance,
                    call,
                    TIMER_EVENT,
                    {"token_id": token.token_id, "node_id": node.id},
                    now,
                )
            )
        else:
            incident, result_names = await _job_outcome(
                unit, instance, pending, token, values, limits, now
            )
            data: dict[str, Any] = {
                "token_id": token.token_id,
                "node_id": node.id,
                "job_id": pending.job_id,
                "job_status": pending.job_status,
            }
            events.append(_event(instance, call, JOB_EVENT, data, now))
            if result_names:
                events.append(_event(instance, call, VARIABLES_EVENT, {"names": result_names}, now))
        with resumed(instance.trace_parent):  # its spans and jobs in the run's trace
            if incident is not None:
                wake = await _fail(unit, call, instance, values, incident, events, limits, now)
            else:
                arrivals = [flow.to_node for flow in node.outgoing]
                wake = await _step(
                    unit, call, model, instance, values, live, arrivals, events, limits, now
                )
    _announce(store, wake)
    return True


async def _job_outcome(
    unit: OrchestraUnit,
    instance: InstanceRecord,
    pending: Pending,
    token: TokenRecord,
    values: dict[str, Any],
    limits: OrchestraLimits,
    now: datetime,
) -> tuple[IncidentInfo | None, list[str]]:
    """Merge a succeeded job's result into `values` (the names merged), or the incident
    a dead-lettered or canceled job is. A saga records how its step ended."""
    assert pending.job_id is not None
    job = await unit.base.jobs.get(pending.tenant_id, pending.job_id, project_id=None)
    if instance.saga:
        await sagas.record_ending(
            unit,
            token.token_id,
            job.status,
            result=job.result,
            error=f"{sagas.job_ended_words(job.job_id, job.status)}: {_error_text(job.last_error)}",
            ended_at=sagas.utc(job.finished_at) if job.finished_at is not None else now,
        )
    if job.status == "dead_lettered":
        return (
            IncidentInfo(
                engine.JOB_DEAD_LETTERED,
                token.node_id,
                token.token_id,
                f"job {job.job_id!r} was dead-lettered: {_error_text(job.last_error)}",
                job.job_id,
            ),
            [],
        )
    if job.status == "canceled":
        return (
            IncidentInfo(
                engine.JOB_CANCELED,
                token.node_id,
                token.token_id,
                f"job {job.job_id!r} was canceled",
                job.job_id,
            ),
            [],
        )
    result = variables.normalize(json.loads(job.result)) if job.result else None
    if result is None:
        return None, []
    merged = result if isinstance(result, dict) else {"result": result}
    try:
        variables.check_names(merged, "result")
        candidate = {**values, **merged}
        variables.encode(candidate, limits.variables_max_bytes, "result")
    except InvalidArgument as exc:
        return (
            IncidentInfo(
                engine.JOB_RESULT_REJECTED,
                token.node_id,
                token.token_id,
                f"job {job.job_id!r}'s result cannot be merged into the variables: {exc}",
                job.job_id,
            ),
            [],
        )
    values.update(merged)
    return None, sorted(merged)


# --- one step -------------------------------------------------------------------------


@traced("orchestra.step", lambda *a, **_: {"orchestra.instance_id": a[3].instance_id})
async def _step(
    unit: OrchestraUnit,
    call: CallContext,
    model: ProcessModel,
    instance: InstanceRecord,
    values: dict[str, Any],
    live: Sequence[TokenRecord],
    arrivals: Sequence[str],
    events: list[NewEvent],
    limits: OrchestraLimits,
    now: datetime,
    *,
    new: bool = False,
) -> list[tuple[str, str]]:
    """Run `engine.advance` from `arrivals` and write what it did (module docstring);
    the (tenant, job type) pairs whose workers to wake after the commit. A `new`
    instance is inserted as the step leaves it (one statement, not two)."""
    outcome = engine.advance(model, values, live, arrivals, now=now, new_id=_new_id)
    events += [_event(instance, call, kind, data, now) for kind, data in outcome.events]
    incident = outcome.incident
    jobs: dict[str, str] = {}
    if incident is None:
        jobs, incident = await _enqueue(
            unit, call, model, instance, outcome, values, limits, now, starting=new, events=events
        )
    if incident is not None:
        return await _fail(unit, call, instance, values, incident, events, limits, now, new=new)
    tokens = [
        Token(
            token_id=rest.token_id,
            instance_id=instance.instance_id,
            tenant_id=instance.tenant_id,
            node_id=rest.node_id,
            status=rest.status,
            job_id=jobs.get(rest.token_id),
            due_at=rest.due_at,
            created_at=now,
        )
        for rest in outcome.resting
    ]
    for token in tokens:
        data: dict[str, Any] = {"token_id": token.token_id, "node_id": token.node_id}
        if token.job_id is not None:
            data["job_id"] = token.job_id
        if token.due_at is not None:
            data["due_at"] = token.due_at.isoformat().replace("+00:00", "Z")
        kind = PARKED_EVENT if token.status == engine.PARKED else WAITING_EVENT
        events.append(_event(instance, call, kind, data, now))
    await unit.orchestra.delete_tokens(outcome.consumed)
    await unit.orchestra.insert_tokens(tokens)
    status = COMPLETED if outcome.finished else RUNNING
    if status == COMPLETED:
        events.append(_event(instance, call, COMPLETED_EVENT, {}, now))
    await _write(unit, instance, new, status=status, values=values, incident=None, now=now)
    await unit.base.events.append_many(events)
    return sorted({(instance.tenant_id, job_type) for job_type in _job_types(outcome)})


def _job_types(outcome: StepOutcome) -> set[str]:
    return {rest.job_type for rest in outcome.resting if rest.job_type}


async def _enqueue(
    unit: OrchestraUnit,
    call: CallContext,
    model: ProcessModel,
    instance: InstanceRecord | Instance,
    outcome: StepOutcome,
    values: Mapping[str, Any],
    limits: OrchestraLimits,
    now: datetime,
    *,
    starting: bool = False,
    events: list[NewEvent] | None = None,
) -> tuple[dict[str, str], IncidentInfo | None]:
    """Enqueue the job of each service-task token (payload: the variables) through the
    job engine in this unit of work; the job id per token, or the incident of a job
    the job engine refused. A saga records them as its steps. When `starting` (the
    start's first step) a refusal raises instead (`_start_refused`): a start that
    cannot enqueue its first jobs writes nothing, as an enqueue would not. The jobs'
    events go to the front of `events` (the step writes them with its own: their
    ids stay before the step's), or are written at once when it is None or the step
    ends in an incident."""
    waiting = [rest for rest in outcome.resting if rest.job_type]
    if not waiting:
        return {}, None
    source_id, source = await unit.orchestra.service_source(instance.tenant_id, now)
    job_call = (
        call
        if call.tenant_id == instance.tenant_id
        else engine_call(instance.tenant_id, instance.trace_id)
    )
    specs = []
    for rest in waiting:
        request = EnqueueRequest(
            job_type=rest.job_type or "",
            source_id=source_id,
            has_payload=True,
            payload=dict(values),
        )
        try:
            spec = validate_enqueue(request, JobLimits(limits.job_payload_max_bytes))
        except DomainError as exc:
            if starting:
                raise _start_refused(rest, exc) from exc
            return {}, _refused(rest, str(exc))
        # Owned from its insert, so the job engine announces its ending
        # (domain/job_endings.py).
        specs.append(replace(spec, owner=f"{OWNER_PREFIX}/{rest.token_id}"))
    job_events: list[NewEvent] = []
    items = await enqueue_within(
        unit.base,
        job_call.with_(project_id=None),
        specs,
        now,
        sources={source_id: source},
        events_out=job_events,
    )
    jobs: dict[str, str] = {}
    for rest, item in zip(waiting, items, strict=True):
        if item.error is not None or item.enqueued is None:
            if starting and item.error is not None:
                raise _start_refused(rest, item.error)
            await unit.base.events.append_many(job_events)  # the jobs that were enqueued
            return {}, _refused(rest, str(item.error))
        jobs[rest.token_id] = item.enqueued.job.job_id
    if events is None:
        await unit.base.events.append_many(job_events)
    else:
        events[:0] = job_events
    if instance.saga:
        started = [
            (rest.token_id, rest.node_id, rest.job_type or "", jobs[rest.token_id])
            for rest in waiting
        ]
        await sagas.record_steps(
            unit,
            instance,
            [(*step, model.nodes[step[1]].compensation or None) for step in started],
            now,
        )
    return jobs, None


def _start_refused(rest: engine.Resting, error: DomainError) -> DomainError:
    """The job engine's refusal of a start's first job as the start's own error: its
    code and reason kept (FAILED_PRECONDITION SOURCE_PAUSED or SOURCE_DISABLED for
    the tenant's paused or disabled "orchestra" source, RESOURCE_EXHAUSTED for a
    quota), the message naming the step and job type; a payload over the job
    engine's cap is INVALID_ARGUMENT naming `variables` (the payload is them)."""
    message = f"the job engine refused the {rest.job_type!r} job of step {rest.node_id!r}: {error}"
    if isinstance(error, InvalidArgument):
        return InvalidArgument.of("variables", message)
    return replace(error, message=message, metadata={**error.metadata, "nodeId": rest.node_id})


def _refused(rest: engine.Resting, why: str) -> IncidentInfo:
    return IncidentInfo(
        engine.JOB_REFUSED,
        rest.node_id,
        rest.token_id,
        f"the job engine refused the {rest.job_type!r} job: {why}",
    )


async def _fail(
    unit: OrchestraUnit,
    call: CallContext,
    instance: InstanceRecord | Instance,
    values: Mapping[str, Any],
    incident: IncidentInfo,
    events: list[NewEvent],
    limits: OrchestraLimits,
    now: datetime,
    *,
    new: bool = False,
) -> list[tuple[str, str]]:
    """Fail the instance with `incident`: every token dropped, the incident stored. A
    saga compensates instead (domain/orchestra/sagas.py); the (tenant, job type)
    pairs whose workers to wake after the commit (its first compensation's)."""
    record: dict[str, Any] = {
        "kind": incident.kind,
        "node_id": incident.node_id,
        "token_id": incident.token_id,
        "message": incident.message,
        "created_at": now.isoformat().replace("+00:00", "Z"),
    }
    if incident.job_id is not None:
        record["job_id"] = incident.job_id
    events.append(_event(instance, call, INCIDENT_EVENT, record, now))
    if instance.saga:
        if not new:
            await _cancel_jobs(unit, call, instance.instance_id, now)
            await sagas.settle_steps(unit, instance.instance_id, now)
            await unit.orchestra.delete_instance_tokens(instance.instance_id)
        job_limits = JobLimits(limits.job_payload_max_bytes)
        saga = await sagas.begin(unit, call, instance, record, values, job_limits, now)
        events += saga.events
        await _write(
            unit, instance, new, status=saga.status, values=values, incident=saga.incident, now=now
        )
        await unit.base.events.append_many(events)
        return saga.wake
    events.append(_event(instance, call, FAILED_EVENT, {"kind": incident.kind}, now))
    if not new:
        await _cancel_jobs(unit, call, instance.instance_id, now)
        await unit.orchestra.delete_instance_tokens(instance.instance_id)
    incident_text = json.dumps(record, sort_keys=True, separators=(",", ":"))
    await _write(unit, instance, new, status=FAILED, values=values, incident=incident_text, now=now)
    await unit.base.events.append_many(events)
    return []


async def _cancel_jobs(
    unit: OrchestraUnit, call: CallContext, instance_id: str, now: datetime
) -> list[tuple[str, str]]:
    """Cancel the unfinished jobs the instance's tokens wait for, as CancelJob does (a
    leased job's worker learns it at its next heartbeat, its quota slot is released),
    with their job.canceled events: a dropped token's job has no one to report to.
    A job that finished meanwhile is left as it is. The (tenant, job type) pairs whose
    throttled jobs the freed slots made leasable."""
    woken: list[tuple[str, str]] = []
    for token in await unit.orchestra.tokens(instance_id):
        if token.job_id is None:
            continue
        job = await unit.base.jobs.get(token.tenant_id, token.job_id, project_id=None, lock=True)
        if JobStatus(job.status) in FINISHED:
            continue
        try:
            after, freed = await unit.base.jobs.cancel(job, now=now)
        except Aborted:  # it moved since it was read (SQLite): it is finishing on its own
            continue
        await unit.base.events.append(
            job.tenant_id,
            JOB_EVENT_TYPES[JobAction.CANCEL],
            JOB.name(job.job_id),
            {"from": job.status, "to": after.status, "attempt": job.attempts},
            call.trace_id or None,
        )
        woken.extend(freed)
    return woken


async def _write(
    unit: OrchestraUnit,
    instance: InstanceRecord | Instance,
    new: bool,
    *,
    status: str,
    values: Mapping[str, Any],
    incident: str | None,
    now: datetime,
) -> None:
    """Insert a new instance in its state after the step, or update a stored one."""
    text = variables.dumps(values)
    if new:
        assert isinstance(instance, Instance)
        await unit.orchestra.insert_instance(
            replace(
                instance,
                status=status,
                variables=text,
                incident=incident,
                updated_at=now,
                ended_at=None if status in ACTIVE_STATUSES else now,
            )
        )
    else:
        await unit.orchestra.update_instance(
            instance.instance_id, status=status, variables=text, incident=incident, now=now
        )


# --- helpers --------------------------------------------------------------------------


async def _model(unit: OrchestraUnit, models: ModelCache, instance: InstanceRecord) -> ProcessModel:
    cached = models.cached(instance.definition_id, instance.definition_version)
    if cached is not None:  # versions are immutable: no need to read it again
        return cached
    record = await unit.orchestra.definition(instance.definition_id, instance.definition_version)
    if record is None:  # versions are never deleted
        raise FailedPrecondition(
            f"instance {instance.instance_id!r} runs on a definition version that is gone",
            reason="DEFINITION_MISSING",
        )
    return models.model(record)


def _event(
    instance: InstanceRecord | Instance,
    call: CallContext,
    kind: str,
    data: Mapping[str, Any],
    now: datetime,
) -> NewEvent:
    return NewEvent(
        tenant_id=instance.tenant_id,
        type=kind,
        subject=INSTANCE.name(instance.instance_id),
        data=data,
        trace_id=call.trace_id or None,
        time=now,
    )


def _announce(store: OrchestraStore, wake: Sequence[tuple[str, str]]) -> None:
    for tenant_id, job_type in wake:
        store.base.notify_work(tenant_id, job_type)


def _require_running(instance: InstanceRecord) -> None:
    if instance.status != RUNNING:
        raise FailedPrecondition(
            f"instance {instance.instance_id!r} is {instance.status}; only a running instance"
            " changes",
            reason="INSTANCE_NOT_RUNNING",
            metadata={"instance_id": instance.instance_id, "status": instance.status},
        )


def _no_instance(instance_id: str) -> NotFound:
    return NotFound.of(INSTANCE, instance_id)


def _not_parked(token_id: str, why: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"token {token_id!r} is not parked: {why}",
        reason="TOKEN_NOT_PARKED",
        metadata={"token_id": token_id},
    )


def _error_text(last_error: str | None) -> str:
    return sagas.error_text(last_error)

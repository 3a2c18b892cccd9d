"""Sagas: process instances whose service tasks declare a compensation (issue 13 point 2).

A **saga** is an instance of a definition version with at least one service task that
declares `compensation: <job type>` (`ProcessModel.saga`, fixed when the instance
starts: the `saga` flag of the instance). Other instances are not sagas and behave
exactly as before: an incident fails them.

Steps. Each service-task job of a saga is a **step** (`orchestra_saga_steps`, one row
per service-task token): inserted `running` when its job is enqueued, in the step's
transaction; `completed` (with the job's result), `failed` (dead-lettered) or
`canceled` when the engine moves the token on or drops it. A step's `ended_at` is when
its job finished (the job's own time), so completion order across parallel branches
is the order the jobs succeeded in, whatever order the engine saw them in; steps that
finished at the same instant are ordered by when they started (`position`).

Compensation. When a saga meets an incident (a dead-lettered or canceled job, a
condition error, a refused job, ...), the engine, in the incident's transaction,
cancels the jobs still in flight (as for any failure; a job that had already
succeeded counts as a completed step), drops every token, and instead of failing the
instance sets it `compensating` (the incident kept on it, why it compensates). The
compensations of the completed steps that declare one run **one at a time in reverse
order of completion** (`compensation_order` 1 first), each a JobEngine job of the
compensation's job type in the tenant's "orchestra" source, so a failed attempt is
retried with the job's backoff until `maxAttempts`, like any job. Completed steps
without a compensation have nothing to undo and are passed over. When the last
compensation succeeds the saga is `compensated` (also at once when there is nothing
to undo); when one is dead-lettered or canceled (or the job engine refuses it) the
saga is `failed` with an incident of kind `compensation_failed` naming the step, the
compensation job and the compensations left `skipped`: an operator must finish by
hand what the saga could not undo.

The payload of a compensation job (a JSON object):

    {"saga_id": instance id, "definition_id": ..., "definition_version": n,
     "step": {"step_id": ..., "node_id": ..., "job_type": ..., "job_id": the step's job,
              "result": the step job's result JSON or null},
     "compensation": {"order": 1, "of": n},
     "failure": {"kind": ..., "node_id": ..., "message": ...},
     "variables": the instance's variables when the compensation is enqueued}

Cancel. Canceling a `compensating` saga stops it: the running compensation's job is
canceled, the pending ones are `canceled` (never run) and the saga is `canceled`.
Canceling a `running` saga cancels it as any instance (no compensation runs: cancel
is the operator's stop, not a failure).

Restarts and replicas. Everything is in the tables: a compensation job's ending is
found by the engine's loop (`ended_compensations`), claimed with a conditional UPDATE
of its status under the instance's lock, and every transition is one transaction
with its events (`orchestra.instance.compensating`, `orchestra.compensation.started`,
`.completed`, `.failed`, `.canceled`, `orchestra.instance.compensated`, and
`orchestra.incident` + `orchestra.instance.failed` for a failed compensation).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from gateway.text import has_control
from server.domain.context import CallContext
from server.domain.errors import DomainError, InvalidArgument, NotFound
from server.domain.events import NewEvent
from server.domain.job_states import EVENT_TYPES as JOB_EVENT_TYPES
from server.domain.job_states import FINISHED, JobAction, JobStatus
from server.domain.jobs import EnqueueRequest, JobLimits, enqueue_within, validate_enqueue
from server.domain.orchestra.records import (
    CANCELED,
    COMPENSATED,
    COMPENSATING,
    COMPLETED,
    FAILED,
    INSTANCE,
    INSTANCE_STATUSES,
    RUNNING,
    SAGA,
    CompensationEnding,
    InstanceRecord,
    OrchestraStore,
    OrchestraUnit,
    SagaCountRecord,
    SagaInstanceRecord,
    SagaStep,
    SagaStepRecord,
)
from server.domain.resources import JOB

OWNER_PREFIX: Final = "orchestra-compensations"  # jobs.owner of compensation jobs
# Step statuses (running, completed, failed, canceled: the record's statuses).
STEP_STATUSES: Final = (RUNNING, COMPLETED, FAILED, CANCELED)
# Compensation statuses.
PENDING, SUCCEEDED, SKIPPED = "pending", "succeeded", "skipped"
COMPENSATION_STATUSES: Final = (PENDING, RUNNING, SUCCEEDED, FAILED, CANCELED, SKIPPED)
# A step's status as the saga view shows it: the compensations' words (a completed
# step's job `succeeded`, as a succeeded compensation's did), so one read has one
# vocabulary: running, succeeded, failed (dead-lettered), canceled.
_SHOWN_STEP_STATUS: Final = {COMPLETED: SUCCEEDED}


def shown_step_status(status: str) -> str:
    """The saga view's word for a stored step status (`completed` -> `succeeded`)."""
    return _SHOWN_STEP_STATUS.get(status, status)


def job_ended_words(job_id: str, status: str) -> str:
    """How a job's end reads in a saga's errors and incidents, one spelling
    everywhere: "job 'x' was dead-lettered", "job 'x' was canceled", "job 'x' was
    leased" (a job status, `_` read as '-')."""
    return f"job {job_id!r} was {status.replace('_', '-')}"


# The incident of a saga whose compensation failed (instance.proto Incident.kind).
COMPENSATION_FAILED: Final = "compensation_failed"
# Finished sagas: their duration counts in the statistics.
ENDED_STATUSES: Final = tuple(s for s in INSTANCE_STATUSES if s not in (RUNNING, COMPENSATING))

COMPENSATING_EVENT = "orchestra.instance.compensating"
COMPENSATED_EVENT = "orchestra.instance.compensated"
STARTED_EVENT = "orchestra.compensation.started"
COMPLETED_EVENT = "orchestra.compensation.completed"
FAILED_EVENT = "orchestra.compensation.failed"
CANCELED_EVENT = "orchestra.compensation.canceled"
INCIDENT_EVENT = "orchestra.incident"
INSTANCE_FAILED_EVENT = "orchestra.instance.failed"
EVENT_TYPES: Final = frozenset(
    {
        COMPENSATING_EVENT,
        COMPENSATED_EVENT,
        STARTED_EVENT,
        COMPLETED_EVENT,
        FAILED_EVENT,
        CANCELED_EVENT,
    }
)
_ID_MAX = 64


@dataclass(slots=True)
class Outcome:
    """Where a saga transition leaves the instance: its status, the incident to store
    (compact JSON; None keeps no incident), the events to append after the caller's,
    and the (tenant, job type) pairs whose workers to wake after the commit."""

    status: str
    incident: str | None
    events: list[NewEvent] = field(default_factory=list)
    wake: list[tuple[str, str]] = field(default_factory=list)


# --- steps ----------------------------------------------------------------------------


async def record_steps(
    unit: OrchestraUnit,
    instance: InstanceRecord,
    started: Sequence[tuple[str, str, str, str, str | None]],
    now: datetime,
) -> None:
    """Record the steps whose jobs this transaction enqueued: (token id, node id, job
    type, job id, compensation job type or None) each."""
    await unit.orchestra.insert_saga_steps(
        [
            SagaStep(
                step_id=token_id,
                instance_id=instance.instance_id,
                tenant_id=instance.tenant_id,
                node_id=node_id,
                job_type=job_type,
                job_id=job_id,
                compensation=compensation or None,
                started_at=now,
            )
            for token_id, node_id, job_type, job_id, compensation in started
        ]
    )


async def record_ending(
    unit: OrchestraUnit,
    step_id: str,
    job_status: str,
    *,
    result: str | None,
    error: str | None,
    ended_at: datetime,
) -> None:
    """Record how a step's job ended: `succeeded` completes the step (its result
    kept for the compensation's payload), `dead_lettered` fails it, `canceled`
    cancels it."""
    status = {"succeeded": COMPLETED, "dead_lettered": FAILED}.get(job_status, CANCELED)
    await unit.orchestra.end_saga_step(
        step_id,
        status=status,
        ended_at=ended_at,
        result=result if status == COMPLETED else None,
        error=None if status == COMPLETED else error,
    )


async def settle_steps(unit: OrchestraUnit, instance_id: str, now: datetime) -> None:
    """After the instance's jobs in flight were canceled (a failure or a cancel): each
    step still running takes its job's final status. A job that succeeded before the
    engine saw it is a completed step (its effect happened: it is compensated)."""
    for step in await unit.orchestra.saga_steps(instance_id):
        if step.status != RUNNING or step.job_id is None:
            continue
        job = await unit.base.jobs.get(step.tenant_id, step.job_id, project_id=None)
        finished = JobStatus(job.status) in FINISHED
        await record_ending(
            unit,
            step.step_id,
            job.status if finished else "canceled",
            result=job.result,
            error=f"{job_ended_words(job.job_id, job.status)} when the instance stopped",
            ended_at=utc(job.finished_at) if job.finished_at is not None else now,
        )


# --- compensation ---------------------------------------------------------------------


async def begin(
    unit: OrchestraUnit,
    call: CallContext,
    instance: InstanceRecord,
    incident: Mapping[str, Any],
    variables: Mapping[str, Any],
    limits: JobLimits,
    now: datetime,
) -> Outcome:
    """Start compensating a saga that met `incident` (its tokens dropped, its jobs
    settled): plan the compensations of the completed steps in reverse order of
    completion and enqueue the first; `compensated` at once when there is none."""
    steps = await unit.orchestra.saga_steps(instance.instance_id)
    todo = sorted(
        (step for step in steps if step.status == COMPLETED and step.compensation),
        key=lambda step: (utc(step.ended_at or step.started_at), step.position),
        reverse=True,
    )
    outcome = Outcome(COMPENSATING, _compact(incident))
    data = {"kind": incident["kind"], "compensations": len(todo)}
    outcome.events.append(_event(instance, call, COMPENSATING_EVENT, data, now))
    if not todo:
        outcome.status = COMPENSATED
        outcome.events.append(_event(instance, call, COMPENSATED_EVENT, {"compensations": 0}, now))
        return outcome
    await unit.orchestra.plan_compensations(
        {step.step_id: order for order, step in enumerate(todo, 1)}
    )
    planned = [_planned(step, order) for order, step in enumerate(todo, 1)]
    await _start(
        unit, call, instance, planned, planned[0], incident, variables, limits, now, outcome
    )
    return outcome


async def compensation_ended(
    unit: OrchestraUnit,
    call: CallContext,
    ending: CompensationEnding,
    limits: JobLimits,
    now: datetime,
) -> Outcome | None:
    """Move a compensating saga on from a compensation job's ending: the next
    compensation, `compensated` after the last, or `failed` when the job was
    dead-lettered or canceled. None when the ending was taken already, the saga is
    no longer compensating, or another transaction holds it (the next pass retries)."""
    instance = await unit.orchestra.lock_instance(
        ending.tenant_id, ending.instance_id, skip_locked=True
    )
    if instance is None or instance.status != COMPENSATING:
        return None
    steps = await unit.orchestra.saga_steps(instance.instance_id)
    step = next((s for s in steps if s.step_id == ending.step_id), None)
    if step is None or step.compensation_job_id != ending.job_id:
        return None
    job = await unit.base.jobs.get(instance.tenant_id, ending.job_id, project_id=None)
    succeeded = job.status == "succeeded"
    error = None if succeeded else _job_error(job.job_id, job.status, job.last_error)
    ended_at = utc(job.finished_at) if job.finished_at is not None else now
    status = SUCCEEDED if succeeded else FAILED
    if not await unit.orchestra.end_compensation(
        step.step_id, expect=RUNNING, status=status, error=error, started_at=None, ended_at=ended_at
    ):
        return None
    incident: dict[str, Any] = json.loads(instance.incident) if instance.incident else {}
    outcome = Outcome(COMPENSATING, instance.incident)
    planned = sorted(
        (_planned(s, s.compensation_order) for s in steps if s.compensation_order is not None),
        key=lambda p: p.order,
    )
    this = next(p for p in planned if p.step_id == step.step_id)
    data = {**this.data(), "job_id": job.job_id}
    if not succeeded:
        data |= {"job_status": job.status, "message": error}
        outcome.events.append(_event(instance, call, FAILED_EVENT, data, now))
        await _fail(unit, call, instance, planned, this, job.job_id, error or "", now, outcome)
        return outcome
    outcome.events.append(_event(instance, call, COMPLETED_EVENT, data, now))
    pending = [p for p in planned if p.order > this.order]
    if pending:
        variables: dict[str, Any] = json.loads(instance.variables)
        await _start(
            unit, call, instance, planned, pending[0], incident, variables, limits, now, outcome
        )
        return outcome
    outcome.status = COMPENSATED
    data = {"compensations": len(planned)}
    outcome.events.append(_event(instance, call, COMPENSATED_EVENT, data, now))
    return outcome


async def cancel(
    unit: OrchestraUnit, call: CallContext, instance: InstanceRecord, now: datetime
) -> tuple[list[NewEvent], list[tuple[str, str]]]:
    """Stop a compensating saga being canceled: the running compensation's job
    canceled, every compensation not finished `canceled`. Its events and the (tenant,
    job type) pairs whose throttled jobs the freed slot made leasable."""
    events: list[NewEvent] = []
    woken: list[tuple[str, str]] = []
    steps = await unit.orchestra.saga_steps(instance.instance_id)
    planned = sorted(
        (s for s in steps if s.compensation_order is not None),
        key=lambda s: s.compensation_order or 0,
    )
    for step in planned:
        if step.compensation_status not in (PENDING, RUNNING):
            continue
        data = _planned(step, step.compensation_order or 0).data()
        if step.compensation_status == RUNNING and step.compensation_job_id is not None:
            woken += await _cancel_job(
                unit, call, instance.tenant_id, step.compensation_job_id, now
            )
            data["job_id"] = step.compensation_job_id
        await unit.orchestra.end_compensation(
            step.step_id,
            expect=step.compensation_status or "",
            status=CANCELED,
            error="the saga was canceled",
            started_at=None,
            ended_at=now if step.compensation_status == RUNNING else None,
        )
        events.append(_event(instance, call, CANCELED_EVENT, data, now))
    return events, woken


@dataclass(frozen=True, slots=True)
class _Planned:
    """A compensation as planned: the step it undoes and its order."""

    step_id: str
    node_id: str
    job_type: str  # the compensation's
    step_job_type: str
    step_job_id: str | None
    result: str | None
    order: int

    def data(self) -> dict[str, Any]:
        return {
            "step_id": self.step_id,
            "node_id": self.node_id,
            "job_type": self.job_type,
            "order": self.order,
        }


def _planned(step: SagaStepRecord, order: int | None) -> _Planned:
    return _Planned(
        step_id=step.step_id,
        node_id=step.node_id,
        job_type=step.compensation or "",
        step_job_type=step.job_type,
        step_job_id=step.job_id,
        result=step.result,
        order=order or 0,
    )


async def _start(
    unit: OrchestraUnit,
    call: CallContext,
    instance: InstanceRecord,
    planned: Sequence[_Planned],
    this: _Planned,
    incident: Mapping[str, Any],
    variables: Mapping[str, Any],
    limits: JobLimits,
    now: datetime,
    outcome: Outcome,
) -> None:
    """Enqueue `this` compensation's job (the module docstring's payload); a job the
    job engine refuses fails the compensation, and the saga, at once."""
    payload = {
        "saga_id": instance.instance_id,
        "definition_id": instance.definition_id,
        "definition_version": instance.definition_version,
        "step": {
            "step_id": this.step_id,
            "node_id": this.node_id,
            "job_type": this.step_job_type,
            "job_id": this.step_job_id,
            "result": json.loads(this.result) if this.result else None,
        },
        "compensation": {"order": this.order, "of": len(planned)},
        "failure": {key: incident.get(key) for key in ("kind", "node_id", "message")},
        "variables": dict(variables),
    }
    source_id, source = await unit.orchestra.service_source(instance.tenant_id, now)
    request = EnqueueRequest(
        job_type=this.job_type, source_id=source_id, has_payload=True, payload=payload
    )
    refused: str | None = None
    job_id = ""
    try:
        spec = validate_enqueue(request, limits)
    except DomainError as exc:
        refused = str(exc)
    else:
        [item] = await enqueue_within(
            unit.base, call.with_(project_id=None), [spec], now, sources={source_id: source}
        )
        if item.error is not None or item.enqueued is None:
            refused = str(item.error)
        else:
            job_id = item.enqueued.job.job_id
    if refused is not None:
        why = f"the job engine refused the {this.job_type!r} job: {refused}"
        await unit.orchestra.end_compensation(
            this.step_id, expect=PENDING, status=FAILED, error=why, started_at=now, ended_at=now
        )
        data = {**this.data(), "message": why}
        outcome.events.append(_event(instance, call, FAILED_EVENT, data, now))
        await _fail(unit, call, instance, planned, this, None, why, now, outcome)
        return
    await unit.orchestra.own_jobs({job_id: f"{OWNER_PREFIX}/{this.step_id}"})
    await unit.orchestra.start_compensation(this.step_id, job_id, now)
    data = {**this.data(), "job_id": job_id}
    outcome.events.append(_event(instance, call, STARTED_EVENT, data, now))
    outcome.wake.append((instance.tenant_id, this.job_type))


async def _fail(
    unit: OrchestraUnit,
    call: CallContext,
    instance: InstanceRecord,
    planned: Sequence[_Planned],
    this: _Planned,
    job_id: str | None,
    why: str,
    now: datetime,
    outcome: Outcome,
) -> None:
    """A compensation failed: the ones after it are skipped, the saga fails with a
    `compensation_failed` incident."""
    skipped = await unit.orchestra.end_pending_compensations(instance.instance_id, SKIPPED)
    record: dict[str, Any] = {
        "kind": COMPENSATION_FAILED,
        "node_id": this.node_id,
        "token_id": this.step_id,
        "message": (
            f"compensation {this.order} of {len(planned)} ({this.job_type!r}, undoing step"
            f" {this.node_id!r}) failed: {why}; {skipped} later compensation(s) skipped"
        ),
        "created_at": rfc3339(now),
    }
    if job_id is not None:
        record["job_id"] = job_id
    outcome.status = FAILED
    outcome.incident = _compact(record)
    outcome.events.append(_event(instance, call, INCIDENT_EVENT, record, now))
    outcome.events.append(
        _event(instance, call, INSTANCE_FAILED_EVENT, {"kind": COMPENSATION_FAILED}, now)
    )


async def _cancel_job(
    unit: OrchestraUnit, call: CallContext, tenant_id: str, job_id: str, now: datetime
) -> list[tuple[str, str]]:
    """Cancel a compensation job unless it finished, with its job.canceled event."""
    job = await unit.base.jobs.get(tenant_id, job_id, project_id=None, lock=True)
    if JobStatus(job.status) in FINISHED:
        return []
    after, freed = await unit.base.jobs.cancel(job, now=now)
    await unit.base.events.append(
        job.tenant_id,
        JOB_EVENT_TYPES[JobAction.CANCEL],
        JOB.name(job.job_id),
        {"from": job.status, "to": after.status, "attempt": job.attempts},
        call.trace_id or None,
    )
    return list(freed)


# --- reads: the saga view and the statistics (SagasService) ---------------------------


@dataclass(frozen=True, slots=True)
class SagaView:
    """A saga (the instance) with its steps by position and its compensations by
    order (steps with `compensation_order` set)."""

    instance: SagaInstanceRecord
    steps: Sequence[SagaStepRecord]

    @property
    def compensations(self) -> list[SagaStepRecord]:
        planned = [step for step in self.steps if step.compensation_order is not None]
        return sorted(planned, key=lambda step: step.compensation_order or 0)


async def get_saga(store: OrchestraStore, call: CallContext, saga_id: str) -> SagaView:
    """The caller's saga `saga_id` (an instance id). Raises InvalidArgument naming
    `sagaId` when it cannot be any saga's id (empty, over `_ID_MAX` characters, or
    with a control character), NotFound (SAGA_NOT_FOUND) when it is absent, another
    tenant's or an instance that is not a saga: one answer for all three."""
    if not saga_id:
        raise InvalidArgument.of("sagaId", "is required")
    if len(saga_id) > _ID_MAX or has_control(saga_id):
        raise InvalidArgument.of(
            "sagaId",
            f"is not a saga id: saga ids are instance ids, at most {_ID_MAX} characters"
            f" without control characters (got {len(saga_id)} characters)",
        )
    found = await store.orchestra.saga(call.require_tenant(), saga_id)
    if found is None:
        raise NotFound.of(SAGA, saga_id)
    return SagaView(*found)


@dataclass(slots=True)
class SagaCounts:
    """Sagas by status; `finished` = completed + compensated + failed + canceled,
    `seconds` the sum of their durations."""

    by_status: dict[str, int] = field(default_factory=lambda: dict.fromkeys(INSTANCE_STATUSES, 0))
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.by_status.values())

    @property
    def finished(self) -> int:
        return sum(self.by_status[status] for status in ENDED_STATUSES)

    @property
    def mean_duration(self) -> timedelta | None:
        """Mean duration of the finished sagas (start to end); None when none ended."""
        if not self.finished:
            return None
        return timedelta(seconds=self.seconds / self.finished)

    def add(self, row: SagaCountRecord) -> None:
        self.by_status[row.status] = self.by_status.get(row.status, 0) + row.instances
        if row.status in ENDED_STATUSES:
            self.seconds += float(row.seconds or 0.0)


@dataclass(frozen=True, slots=True)
class SagaStats:
    """The tenant's sagas: totals and per definition (ordered by definition id)."""

    totals: SagaCounts
    definitions: Sequence[tuple[str, SagaCounts]]


async def saga_stats(store: OrchestraStore, call: CallContext) -> SagaStats:
    """Counts by status, overall and per definition, and the mean duration of the
    finished sagas, over every saga of the caller's tenant (one grouped query)."""
    totals = SagaCounts()
    per: dict[str, SagaCounts] = {}
    for row in await store.orchestra.saga_counts(call.require_tenant()):
        totals.add(row)
        per.setdefault(row.definition_id, SagaCounts()).add(row)
    return SagaStats(totals, sorted(per.items()))


# --- helpers --------------------------------------------------------------------------


def utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def rfc3339(value: datetime) -> str:
    return utc(value).isoformat().replace("+00:00", "Z")


def _compact(record: Mapping[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


def _job_error(job_id: str, status: str, last_error: str | None) -> str:
    if status == "canceled":
        return job_ended_words(job_id, status)
    return f"{job_ended_words(job_id, 'dead_lettered')}: {error_text(last_error)}"


def error_text(last_error: str | None) -> str:
    """A job's `last_error` in words: "category code message"."""
    if not last_error:
        return "no error recorded"
    try:
        error = json.loads(last_error)
    except ValueError:
        return last_error
    if isinstance(error, dict):
        parts = [str(error.get(key)) for key in ("category", "code", "message") if error.get(key)]
        return " ".join(parts) or last_error
    return str(error)


def _event(
    instance: InstanceRecord,
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

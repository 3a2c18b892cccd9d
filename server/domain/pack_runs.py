"""Pack runs (DESIGN §4.1, issue 10 point 4): runs of a task pack, a named and ordered
list of jobs with optional dependencies between them (`pack_run.proto`).

Creating. The whole pack is checked before anything is written (`validate_pack`):
the pack name, 1 to `PACK_JOBS_MAX` jobs each valid as EnqueueJob would have it
(`jobs.validate_enqueue`, violations renamed from `job.x` to `jobs[i].x`), unique
job names, dependencies that name other jobs of the pack, at most once, and no
cycle (Kahn's algorithm; a cycle is named by its path). Every source is then read
in the unit of work: an unknown one is NOT_FOUND naming the source and the job (as
EnqueueJob answers it), a disabled or paused one FAILED_PRECONDITION naming both.
Then, in the same transaction: the run, one row per job (its validated spec), the
jobs without dependencies enqueued (their `packRunId` set), the events and the audit
entry. A failure anywhere leaves nothing behind.

Advancing. `advance` is the one step that moves a run forward, in one unit of work
that first locks the run (an UPDATE of its version: the row lock on PostgreSQL,
the write lock on SQLite), so replicas advancing the same run take turns: a job
whose job ended takes the job's outcome (succeeded; dead_lettered is `failed`;
canceled), pending jobs whose dependencies all succeeded are enqueued, pending jobs
with a dependency that failed, was canceled or skipped are `skipped` (transitively),
and the run's status is derived (`derive_status`). Each job row changes with a
conditional UPDATE (`WHERE status = <what was read>`), so a transition happens once.
`PackRunEngine` calls it for every run with a running job whose job has ended,
found by an indexed query (`ix_pack_run_jobs_running`), every `interval_s` and at
once on a job-ending hint (`domain/job_endings.py`): the hint makes it fast, the
loop makes it certain (a crash, another replica's completion).

A job of the run is enqueued by the run, not by a caller: its source was checked
when the run was created (or retried) and is not checked again when its
dependencies succeed later; its quota applies at lease time as for any job.

Canceling and retrying: `cancel_pack_run` (a running run only) cancels every
enqueued job that has not finished with the jobs' own cancel (a leased job's worker
learns it at its next heartbeat) and the pending ones, in one transaction;
`retry_pack_run` (a failed or canceled run, once) starts a new run of the jobs that
did not succeed, dependencies on succeeded jobs dropped (already met), `retryOf`
and `retriedBy` linking the two. Each new job re-runs an old one: its `replayOf`
names it, and the dead-letter entry of the old job's chain (pending, or replayed by
a re-run that was canceled) becomes replayed by the new job, so the chain goes on
from it. That is why ReplayJob and the dead-letter queue refuse a step that did
not succeed (`jobs.pack_run_refusal`): the run is what re-runs its jobs.

Listing: keyset over (createdAt desc, packRunId desc), `ix_pack_runs_tenant_created_id`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from gateway.text import has_control
from server.domain import audit, tracing
from server.domain.context import CallContext
from server.domain.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Violation,
    shown,
)
from server.domain.events import NewEvent
from server.domain.job_endings import JobEnding
from server.domain.job_states import EVENT_TYPES, REPLAYED_EVENT, JobAction, JobStatus, transition
from server.domain.jobs import (
    EnqueueRequest,
    Job,
    JobLimits,
    SourceState,
    validate_enqueue,
)
from server.domain.pagination import TEXT, TIME, ListingSpec, Page, PageTokens, SortKey
from server.domain.resources import JOB, ResourceType

if TYPE_CHECKING:
    from server.domain.units import Store, UnitOfWork

log = logging.getLogger("orchestrator.pack_runs")

PACK_JOBS_MAX = 100
DEPENDS_MAX = 100
PACK_NAME_MAX = 200
JOB_NAME_PATTERN = r"^[a-z][a-z0-9._-]{0,63}$"
_JOB_NAME = re.compile(JOB_NAME_PATTERN)
_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
# How many runs with ended jobs one engine pass advances (the rest: the next pass).
ADVANCE_BATCH = 200

# Run statuses (PackRun.status) and job statuses within a run (PackJob.status).
RUNNING, SUCCEEDED, FAILED, CANCELED = "running", "succeeded", "failed", "canceled"
RUN_STATUSES = (RUNNING, SUCCEEDED, FAILED, CANCELED)
PENDING, SKIPPED = "pending", "skipped"
STEP_STATUSES = (PENDING, RUNNING, SUCCEEDED, FAILED, CANCELED, SKIPPED)
STEP_FINISHED = frozenset({SUCCEEDED, FAILED, CANCELED, SKIPPED})
# A finished job's status -> its step's status.
OUTCOMES: Mapping[str, str] = {
    JobStatus.SUCCEEDED.value: SUCCEEDED,
    JobStatus.DEAD_LETTERED.value: FAILED,
    JobStatus.CANCELED.value: CANCELED,
}

# Event types (subject "packRuns/{packRunId}").
CREATED_EVENT = "pack_run.created"
JOB_STARTED_EVENT = "pack_run.job_started"
JOB_FINISHED_EVENT = "pack_run.job_finished"
FINISHED_EVENTS = {
    SUCCEEDED: "pack_run.succeeded",
    FAILED: "pack_run.failed",
    CANCELED: "pack_run.canceled",
}
RETRIED_EVENT = "pack_run.retried"
EVENT_TYPE_NAMES = frozenset(
    {CREATED_EVENT, JOB_STARTED_EVENT, JOB_FINISHED_EVENT, RETRIED_EVENT, *FINISHED_EVENTS.values()}
)


# --- values -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PackJobRequest:
    """One job of a pack as the caller sent it: its name, what to enqueue (`pack_run_id`
    and `idempotency_key` are ignored: the run sets the first, a pack has none) and
    the names of the jobs it waits for."""

    name: str
    job: EnqueueRequest
    depends_on: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PackRun:
    """A run (storage/tables.py PackRunRow). `version` grows with every change."""

    pack_run_id: str
    tenant_id: str
    project_id: str | None
    pack_name: str
    status: str
    retry_of: str | None
    retried_by: str | None
    version: int
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class PackStep:
    """One job of a run (storage/tables.py PackRunJobRow): its validated spec, what it
    waits for (names, JSON text in storage) and how far it got. `job_status` and
    `attempts` are read from its job (None/0 before it is enqueued or once pruned)."""

    pack_run_id: str
    position: int
    tenant_id: str
    name: str
    job_type: str
    source_id: str
    priority: int
    payload: str | None
    max_attempts: int
    backoff_initial_s: float
    backoff_max_s: float
    backoff_multiplier: float
    backoff_jitter: float
    depends_on: tuple[str, ...]
    status: str
    job_id: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    job_status: str | None = None
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class PackRunView:
    """A run as the API shows it: `steps` in the pack's order (None in listings) and the
    count of its jobs per PackJob status (every status present, plus "total")."""

    run: PackRun
    steps: Sequence[PackStep] | None
    counts: Mapping[str, int]

    @property
    def created_at(self) -> datetime:  # the listing's sort keys
        return self.run.created_at

    @property
    def pack_run_id(self) -> str:
        return self.run.pack_run_id


@dataclass(frozen=True, slots=True)
class Canceled:
    """What CancelPackRun answers: the run after the change and what this call canceled."""

    view: PackRunView
    canceled_jobs: int
    canceled_pending: int


@dataclass(frozen=True, slots=True)
class PackRunQuery:
    tenant_id: str
    project_id: str | None = None
    status: str | None = None
    pack_name: str | None = None


def count_steps(steps: Sequence[PackStep]) -> dict[str, int]:
    counts = dict.fromkeys(STEP_STATUSES, 0)
    for step in steps:
        counts[step.status] += 1
    counts["total"] = len(steps)
    return counts


def _snapshot(view: PackRunView) -> Mapping[str, Any]:
    """The audited view of a run: identity, state, links and counts (not payloads)."""
    run = view.run
    return {
        "packRunId": run.pack_run_id,
        "packName": run.pack_name,
        "status": run.status,
        "retryOf": run.retry_of,
        "retriedBy": run.retried_by,
        "projectId": run.project_id,
        "counts": dict(view.counts),
    }


PACK_RUN: ResourceType[PackRunView] = ResourceType(
    singular="pack run",
    collection="packRuns",
    id_field="packRunId",
    id_of=lambda view: view.run.pack_run_id,
    snapshot=_snapshot,
)

PACK_RUN_LISTING: ListingSpec[PackRunView, PackRunQuery] = ListingSpec(
    name="packRuns",
    sort=(SortKey("-createdAt", "created_at", TIME), SortKey("-packRunId", "pack_run_id", TEXT)),
    filters={"status": "status", "packName": "pack_name", "project": "project_id"},
)


# --- repositories -----------------------------------------------------------------------


class PackRunRepository(Protocol):
    """The pack-run side of a unit of work."""

    async def insert(self, run: PackRun, steps: Sequence[PackStep]) -> None:
        """Insert a run and its job rows."""
        ...

    async def lock(self, tenant_id: str, pack_run_id: str, *, project_id: str | None) -> PackRun:
        """The run, its version incremented (which locks it until the commit). Raises
        NotFound (PACK_RUN_NOT_FOUND) when it is not the tenant's (or project's)."""
        ...

    async def steps(self, pack_run_id: str) -> list[PackStep]:
        """The run's jobs in the pack's order, with their jobs' status and attempts."""
        ...

    async def move_step(
        self, step: PackStep, *, status: str, now: datetime, job_id: str | None = None
    ) -> bool:
        """Move `step` from the status it was read in to `status` (conditional: False when
        it changed meanwhile); `job_id` with `started_at` = now when it starts, and
        `finished_at` = now when `status` is a finished one."""
        ...

    async def replay_dead_letters(
        self, tenant_id: str, replays: Mapping[str, str], *, now: datetime
    ) -> int:
        """Mark the dead-letter entries whose chain ends at a job in `replays` (a
        retried run's job id -> the retry's job that re-runs it) replayed by that job,
        as a dead-letter replay does (replayCount + 1): the old job's pending entry
        (off the pending counters), or the replayed entry whose replay it was (it was
        canceled, not dead-lettered); the number marked. Resolved entries are left."""
        ...

    async def update_run(
        self,
        pack_run_id: str,
        *,
        now: datetime,
        status: str | None = None,
        retried_by: str | None = None,
    ) -> None:
        """Set the run's status (with finished_at = now when finished) and/or retriedBy."""
        ...


class PackRunReads(Protocol):
    """Each read is one statement, so a run's status, its jobs and its counts are read
    from one snapshot (never a run still `running` beside jobs that all finished)."""

    async def get(self, tenant_id: str, pack_run_id: str, *, project_id: str | None) -> PackRunView:
        """The run with its jobs and counts. Raises NotFound (PACK_RUN_NOT_FOUND)."""
        ...

    async def page(
        self, query: PackRunQuery, after: tuple[Any, ...] | None, limit: int
    ) -> Sequence[PackRunView]:
        """Up to `limit + 1` runs of `query` after `after` in PACK_RUN_LISTING's order,
        with their counts (steps None)."""
        ...

    async def with_ended_jobs(self, limit: int) -> Sequence[tuple[str, str]]:
        """(tenant_id, pack_run_id) of up to `limit` runs that have a running job whose
        job has finished (or was pruned): the runs `advance` has work for."""
        ...


# --- validation -------------------------------------------------------------------------


def validate_pack(
    pack_name: str, jobs: Sequence[PackJobRequest], limits: JobLimits
) -> list[PackStep]:
    """The pack's jobs as pending steps (run id and tenant left empty), or InvalidArgument
    naming every bad field: `packName`, `jobs`, `jobs[i].<field>` (as EnqueueJob names
    it), `jobs[i].name`, `jobs[i].dependsOn[k]`, and a cycle on `jobs[i].dependsOn`."""
    violations: list[Violation] = []
    if not pack_name:
        violations.append(Violation("packName", "is required"))
    elif len(pack_name) > PACK_NAME_MAX:
        violations.append(Violation("packName", f"must be at most {PACK_NAME_MAX} characters"))
    elif has_control(pack_name) or not pack_name.strip():
        violations.append(Violation("packName", "must be printable and not blank"))
    if not jobs:
        violations.append(Violation("jobs", "must list at least one job"))
    elif len(jobs) > PACK_JOBS_MAX:
        violations.append(
            Violation("jobs", f"must list at most {PACK_JOBS_MAX} jobs, got {len(jobs)}")
        )
    if not jobs or len(jobs) > PACK_JOBS_MAX:
        raise InvalidArgument.from_violations(violations)

    first_of: dict[str, int] = {}
    for i, item in enumerate(jobs):
        if not item.name:
            violations.append(Violation(f"jobs[{i}].name", "is required"))
        elif not _JOB_NAME.fullmatch(item.name):
            violations.append(
                Violation(
                    f"jobs[{i}].name",
                    "must be a lowercase slug: a letter, then up to 63 letters, digits, '.', "
                    f"'_' or '-', got {shown(item.name)}",
                )
            )
        elif item.name in first_of:
            violations.append(
                Violation(
                    f"jobs[{i}].name",
                    f"{item.name!r} is already the name of jobs[{first_of[item.name]}]",
                )
            )
        else:
            first_of[item.name] = i

    steps: list[PackStep] = []
    for i, item in enumerate(jobs):
        if item.job.source_id and not _ID.fullmatch(item.job.source_id):
            violations.append(
                Violation(
                    f"jobs[{i}].sourceId", "must be 1 to 64 letters, digits, '.', '_', ':' or '-'"
                )
            )
            continue
        request = replace(item.job, pack_run_id=None, idempotency_key=None)
        try:
            spec = validate_enqueue(request, limits)
        except InvalidArgument as error:
            violations.extend(
                Violation(f"jobs[{i}].{v.field.split('.', 1)[-1]}", v.description)
                for v in error.violations
            )
            continue
        steps.append(
            PackStep(
                pack_run_id="",
                position=i,
                tenant_id="",
                name=item.name,
                job_type=spec.job_type,
                source_id=spec.source_id,
                priority=spec.priority,
                payload=spec.payload,
                max_attempts=spec.max_attempts,
                backoff_initial_s=spec.backoff_initial_s,
                backoff_max_s=spec.backoff_max_s,
                backoff_multiplier=spec.backoff_multiplier,
                backoff_jitter=spec.backoff_jitter,
                depends_on=tuple(item.depends_on),
                status=PENDING,
            )
        )

    dependencies_ok = True
    for i, item in enumerate(jobs):
        if len(item.depends_on) > DEPENDS_MAX:
            violations.append(
                Violation(f"jobs[{i}].dependsOn", f"must name at most {DEPENDS_MAX} jobs")
            )
            dependencies_ok = False
            continue
        seen: set[str] = set()
        for k, name in enumerate(item.depends_on):
            where = f"jobs[{i}].dependsOn[{k}]"
            if name == item.name:
                violations.append(Violation(where, "a job cannot depend on itself"))
            elif name not in first_of:
                violations.append(Violation(where, f"names no job of the pack: {shown(name)}"))
            elif name in seen:
                violations.append(Violation(where, f"names {shown(name)} twice"))
            else:
                seen.add(name)
                continue
            dependencies_ok = False
    if dependencies_ok and len(first_of) == len(jobs):
        cycle = find_cycle({item.name: tuple(item.depends_on) for item in jobs})
        if cycle is not None:
            start = first_of[cycle[0]]
            violations.append(
                Violation(
                    f"jobs[{start}].dependsOn",
                    "forms a dependency cycle: " + " -> ".join([*cycle, cycle[0]]),
                )
            )
    if violations:
        raise InvalidArgument.from_violations(violations)
    return steps


def find_cycle(graph: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A dependency cycle of `graph` (name -> names it depends on, every name a key), as
    the names along it starting from the first in `graph`'s order that is on one; None
    when there is none. Kahn's algorithm removes what can be ordered; what is left
    holds a cycle, walked from its first name."""
    waiting = {name: len(set(deps)) for name, deps in graph.items()}
    dependents: dict[str, list[str]] = {name: [] for name in graph}
    for name, deps in graph.items():
        for dep in set(deps):
            dependents[dep].append(name)
    ready = [name for name, n in waiting.items() if n == 0]
    while ready:
        done = ready.pop()
        for dependent in dependents[done]:
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                ready.append(dependent)
    left = [name for name, n in waiting.items() if n > 0]
    if not left:
        return None
    remaining = set(left)
    path: list[str] = []
    at = left[0]
    while at not in path:
        path.append(at)
        at = next(dep for dep in graph[at] if dep in remaining)
    return path[path.index(at) :]


# --- advancing (pure) -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    """What `plan` decided for a run's jobs: new statuses by position (`start`: the
    positions to enqueue) and the run's derived status."""

    moves: Mapping[int, str]
    start: tuple[int, ...]
    status: str


def plan(steps: Sequence[PackStep], run_status: str) -> Plan:
    """Advance `steps` as far as they go: running jobs whose job finished take its
    outcome, pending jobs whose dependencies all succeeded start, pending jobs with a
    dependency that did not succeed are skipped (to a fixpoint); then the run's status
    (`derive_status`; a run that is not running keeps its status)."""
    status = {step.name: step.status for step in steps}
    moves: dict[int, str] = {}
    for step in steps:
        outcome = OUTCOMES.get(step.job_status or "")
        if step.status == RUNNING and outcome is not None:
            moves[step.position] = status[step.name] = outcome
        elif step.status == RUNNING and step.job_id is not None and step.job_status is None:
            moves[step.position] = status[step.name] = FAILED  # its job is gone (pruned)
    start: list[int] = []
    changed = True
    while changed:
        changed = False
        for step in steps:
            if status[step.name] != PENDING:
                continue
            deps = [status[name] for name in step.depends_on]
            if any(s in (FAILED, CANCELED, SKIPPED) for s in deps):
                moves[step.position] = status[step.name] = SKIPPED
                changed = True
            elif all(s == SUCCEEDED for s in deps):
                moves[step.position] = status[step.name] = RUNNING
                start.append(step.position)
                changed = True
    derived = derive_status(list(status.values())) if run_status == RUNNING else run_status
    return Plan(moves=moves, start=tuple(sorted(start)), status=derived)


def derive_status(step_statuses: Sequence[str]) -> str:
    """A run's status from its jobs': running while one is pending or running, then
    succeeded when all succeeded, else failed (canceled is only set by a cancel)."""
    if any(s in (PENDING, RUNNING) for s in step_statuses):
        return RUNNING
    if all(s == SUCCEEDED for s in step_statuses):
        return SUCCEEDED
    return FAILED


# --- writing ----------------------------------------------------------------------------


def _job_of(
    run: PackRun, step: PackStep, now: datetime, trace_id: str | None, replay_of: str | None
) -> Job:
    return Job(
        job_id=str(uuid.uuid4()),
        tenant_id=run.tenant_id,
        project_id=run.project_id,
        job_type=step.job_type,
        source_id=step.source_id,
        status=JobStatus.QUEUED.value,
        priority=step.priority,
        payload=step.payload,
        result=None,
        attempts=0,
        max_attempts=step.max_attempts,
        backoff_initial_s=step.backoff_initial_s,
        backoff_max_s=step.backoff_max_s,
        backoff_multiplier=step.backoff_multiplier,
        backoff_jitter=step.backoff_jitter,
        run_at=now,
        next_eligible_at=now,
        lease_id=None,
        lease_owner=None,
        lease_expires_at=None,
        quota_id=None,
        last_error=None,
        idempotency_key=None,
        request_hash=None,
        replay_of=replay_of,
        pack_run_id=run.pack_run_id,
        created_at=now,
        updated_at=now,
        finished_at=None,
        trace_parent=tracing.current_traceparent(),  # the current call's or step's span
        trace_id=trace_id,
    )


def _run_event(
    run: PackRun, kind: str, data: Mapping[str, Any], trace_id: str | None, now: datetime
) -> NewEvent:
    return NewEvent(
        tenant_id=run.tenant_id,
        type=kind,
        subject=PACK_RUN.name(run.pack_run_id),
        data=data,
        trace_id=trace_id,
        time=now,
    )


async def _apply(
    uow: UnitOfWork,
    run: PackRun,
    steps: Sequence[PackStep],
    decided: Plan,
    *,
    now: datetime,
    trace_id: str | None,
    replays: Mapping[str, str] | None = None,
) -> tuple[list[PackStep], list[tuple[str, str]]]:
    """Write `decided` for `run` (locked) in `uow`: the moved jobs (conditionally), the
    started jobs enqueued, their events, and the run's status. `replays` names, by job
    name, the job of the retried run a started job re-runs (its replayOf; a
    job.replayed event on the old job). Returns the steps after the change and the
    (tenant, job type) keys of the jobs enqueued now."""
    by_position = {step.position: step for step in steps}
    after = dict(by_position)
    jobs: list[Job] = []
    events: list[NewEvent] = []
    for position, status in sorted(decided.moves.items()):
        step = by_position[position]
        job: Job | None = None
        if position in decided.start:
            job = _job_of(run, step, now, trace_id, (replays or {}).get(step.name))
        moved = await uow.pack_runs.move_step(
            step, status=status, now=now, job_id=job.job_id if job else None
        )
        if not moved:
            continue
        if job is not None:
            jobs.append(job)
            after[position] = replace(
                step, status=status, job_id=job.job_id, job_status=job.status, started_at=now
            )
            events.append(
                _run_event(
                    run, JOB_STARTED_EVENT, {"job": step.name, "jobId": job.job_id}, trace_id, now
                )
            )
            enqueued: dict[str, Any] = {"to": job.status, "packRunId": run.pack_run_id}
            if job.replay_of is not None:
                enqueued["replayOf"] = job.replay_of
                events.append(
                    NewEvent(
                        tenant_id=run.tenant_id,
                        type=REPLAYED_EVENT,
                        subject=JOB.name(job.replay_of),
                        data={"replayJobId": job.job_id, "packRunId": run.pack_run_id},
                        trace_id=trace_id,
                        time=now,
                    )
                )
            events.append(
                NewEvent(
                    tenant_id=run.tenant_id,
                    type=EVENT_TYPES[JobAction.ENQUEUE],
                    subject=JOB.name(job.job_id),
                    data=enqueued,
                    trace_id=trace_id,
                    time=now,
                )
            )
        else:
            after[position] = replace(step, status=status, finished_at=now)
            events.append(
                _run_event(
                    run,
                    JOB_FINISHED_EVENT,
                    {"job": step.name, "jobId": step.job_id, "from": step.status, "to": status},
                    trace_id,
                    now,
                )
            )
    if jobs:
        await uow.jobs.insert(jobs)
    final = [after[position] for position in sorted(after)]
    status = derive_status([s.status for s in final]) if run.status == RUNNING else run.status
    if status != run.status:
        await uow.pack_runs.update_run(run.pack_run_id, now=now, status=status)
        events.append(
            _run_event(
                run, FINISHED_EVENTS[status], {"from": run.status, "to": status}, trace_id, now
            )
        )
    await uow.events.append_many(events)
    return final, sorted({(job.tenant_id, job.job_type) for job in jobs})


async def _check_sources(
    uow: UnitOfWork,
    tenant_id: str,
    project_id: str | None,
    steps: Sequence[PackStep],
    *,
    retry_of: str | None,
) -> None:
    """Every job's source exists and may enqueue now. Raises NotFound (SOURCE_NOT_FOUND,
    naming the first job whose source is not the caller's, as EnqueueJob answers an
    unknown source; FailedPrecondition when retrying `retry_of`, whose caller named no
    source), FailedPrecondition for a disabled or paused one (SOURCE_DISABLED,
    SOURCE_PAUSED)."""
    states: Mapping[str, SourceState] = await uow.jobs.source_states(
        tenant_id, sorted({step.source_id for step in steps}), project_id=project_id
    )
    gone = next((step for step in steps if step.source_id not in states), None)
    if retry_of is not None and gone is not None:
        raise FailedPrecondition(
            f"source {gone.source_id!r} of job {gone.name!r} no longer exists; the pack run "
            "cannot be retried",
            reason="SOURCE_NOT_FOUND",
            metadata={"sourceId": gone.source_id, "job": gone.name},
        )
    if gone is not None:  # as EnqueueJob answers an unknown source
        raise NotFound(
            f"source {gone.source_id!r} of jobs[{gone.position}] not found",
            reason="SOURCE_NOT_FOUND",
            metadata={"sourceId": gone.source_id, "job": gone.name},
        )
    for step in steps:
        state = states[step.source_id]
        if not state.enabled or state.paused:
            what = "disabled" if not state.enabled else "paused"
            raise FailedPrecondition(
                f"source {step.source_id!r} of jobs[{step.position}] is {what}; a pack run "
                "cannot enqueue its jobs",
                reason=f"SOURCE_{what.upper()}",
                metadata={"sourceId": step.source_id, "job": step.name},
            )


async def _start_run(
    uow: UnitOfWork,
    call: CallContext,
    tenant_id: str,
    pack_name: str,
    steps: Sequence[PackStep],
    *,
    retry_of: str | None,
    now: datetime,
    replays: Mapping[str, str] | None = None,
) -> tuple[PackRunView, list[tuple[str, str]]]:
    """Insert a new run of `steps` (pending) in `uow` and start what can start
    (`replays`: as `_apply`'s)."""
    await _check_sources(uow, tenant_id, call.project_id, steps, retry_of=retry_of)
    run = PackRun(
        pack_run_id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        project_id=call.project_id,
        pack_name=pack_name,
        status=RUNNING,
        retry_of=retry_of,
        retried_by=None,
        version=1,
        created_at=now,
        updated_at=now,
        finished_at=None,
    )
    pending = [
        replace(step, pack_run_id=run.pack_run_id, tenant_id=tenant_id, status=PENDING)
        for step in steps
    ]
    await uow.pack_runs.insert(run, pending)
    data: dict[str, Any] = {"packName": pack_name, "jobs": len(pending)}
    if retry_of is not None:
        data["retryOf"] = retry_of
    await uow.events.append_many([_run_event(run, CREATED_EVENT, data, call.trace_id, now)])
    final, woken = await _apply(
        uow,
        run,
        pending,
        plan(pending, RUNNING),
        now=now,
        trace_id=call.trace_id,
        replays=replays,
    )
    status = derive_status([s.status for s in final])
    run = replace(run, status=status, finished_at=None if status == RUNNING else now)
    return PackRunView(run=run, steps=final, counts=count_steps(final)), woken


def _announce(store: Store, woken: Sequence[tuple[str, str]]) -> None:
    for key in woken:
        store.notify_work(*key)


async def create_pack_run(
    store: Store,
    call: CallContext,
    pack_name: str,
    jobs: Sequence[PackJobRequest],
    limits: JobLimits,
    *,
    now: datetime,
) -> PackRunView:
    """Start a run of the pack: validated whole (`validate_pack`), sources checked, then
    the run, its jobs without dependencies enqueued, events and audit in one unit of
    work. Raises InvalidArgument (every bad field), NotFound (SOURCE_NOT_FOUND),
    FailedPrecondition (SOURCE_PAUSED, SOURCE_DISABLED)."""
    tenant_id = call.require_tenant()
    steps = validate_pack(pack_name, jobs, limits)
    async with store.transaction() as uow:
        view, woken = await _start_run(
            uow, call, tenant_id, pack_name, steps, retry_of=None, now=now
        )
        await audit.record(uow, call, PACK_RUN, before=None, after=view)
    _announce(store, woken)
    return view


def _check_id(pack_run_id: str) -> None:
    """No run has an id outside the issued alphabet: NotFound (PACK_RUN_NOT_FOUND), as
    for every other resource's id in a path, and nothing a database refuses (NUL for
    PostgreSQL) reaches it."""
    if not _ID.fullmatch(pack_run_id):
        raise NotFound.of(PACK_RUN, pack_run_id)


def _status_conflict(run: PackRun, action: str, allowed: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"pack run is {run.status}; only a {allowed} pack run can be {action}",
        reason="PACK_RUN_STATUS_CONFLICT",
        metadata={"status": run.status, "action": action, "packRunId": run.pack_run_id},
    )


async def cancel_pack_run(
    store: Store, call: CallContext, *, pack_run_id: str, now: datetime
) -> Canceled:
    """Cancel a running run: its unfinished jobs (`uow.jobs.cancel`, each with its
    job.canceled event; a leased job's quota slot is released) and its pending jobs,
    then the run, in one unit of work with the audit entry.

    Raises NotFound (PACK_RUN_NOT_FOUND), FailedPrecondition (PACK_RUN_STATUS_CONFLICT,
    metadata status: it is not running)."""
    tenant_id = call.require_tenant()
    _check_id(pack_run_id)
    woken: list[tuple[str, str]] = []
    async with store.transaction() as uow:
        run = await uow.pack_runs.lock(tenant_id, pack_run_id, project_id=call.project_id)
        if run.status != RUNNING:
            raise _status_conflict(run, "canceled", RUNNING)
        steps = await uow.pack_runs.steps(pack_run_id)
        before = PackRunView(run=run, steps=None, counts=count_steps(steps))
        after: list[PackStep] = []
        events: list[NewEvent] = []
        canceled_jobs = canceled_pending = 0
        for step in steps:
            status, job_status = step.status, step.job_status
            if step.status == PENDING:
                status = CANCELED
                canceled_pending += 1
            elif step.status == RUNNING and step.job_id is not None:
                job = await uow.jobs.get(tenant_id, step.job_id, project_id=None, lock=True)
                job_status = job.status
                if job.status in OUTCOMES:  # finished, not yet advanced: its outcome
                    status = OUTCOMES[job.status]
                else:
                    transition(job.status, JobAction.CANCEL)
                    _, released = await uow.jobs.cancel(job, now=now)
                    woken.extend(released)
                    events.append(
                        NewEvent(
                            tenant_id=tenant_id,
                            type=EVENT_TYPES[JobAction.CANCEL],
                            subject=JOB.name(job.job_id),
                            data={
                                "from": job.status,
                                "to": JobStatus.CANCELED.value,
                                "attempt": job.attempts,
                                "packRunId": pack_run_id,
                            },
                            trace_id=call.trace_id,
                            time=now,
                        )
                    )
                    status, job_status = CANCELED, JobStatus.CANCELED.value
                    canceled_jobs += 1
            if status != step.status:
                await uow.pack_runs.move_step(step, status=status, now=now)
                step = replace(step, status=status, job_status=job_status, finished_at=now)
            after.append(step)
        await uow.pack_runs.update_run(pack_run_id, now=now, status=CANCELED)
        events.append(
            _run_event(
                run,
                FINISHED_EVENTS[CANCELED],
                {
                    "from": RUNNING,
                    "to": CANCELED,
                    "canceledJobs": canceled_jobs,
                    "canceledPending": canceled_pending,
                },
                call.trace_id,
                now,
            )
        )
        await uow.events.append_many(events)
        canceled = replace(run, status=CANCELED, updated_at=now, finished_at=now)
        view = PackRunView(run=canceled, steps=after, counts=count_steps(after))
        await audit.record(uow, call, PACK_RUN, before=before, after=view)
    _announce(store, woken)
    return Canceled(view=view, canceled_jobs=canceled_jobs, canceled_pending=canceled_pending)


async def retry_pack_run(
    store: Store, call: CallContext, *, pack_run_id: str, now: datetime
) -> PackRunView:
    """Start a new run of the jobs of a failed or canceled run that did not succeed
    (dependencies on succeeded jobs dropped), linked both ways; audited on the retried
    run (before/after show retriedBy).

    Raises NotFound (PACK_RUN_NOT_FOUND), FailedPrecondition (PACK_RUN_STATUS_CONFLICT:
    running or succeeded; PACK_RUN_ALREADY_RETRIED; SOURCE_PAUSED, SOURCE_DISABLED),
    InvalidArgument (SOURCE_NOT_FOUND: a job's source was deleted)."""
    tenant_id = call.require_tenant()
    _check_id(pack_run_id)
    async with store.transaction() as uow:
        run = await uow.pack_runs.lock(tenant_id, pack_run_id, project_id=call.project_id)
        if run.status not in (FAILED, CANCELED):
            raise _status_conflict(run, "retried", "failed or canceled")
        if run.retried_by is not None:
            raise FailedPrecondition(
                f"pack run was already retried by {run.retried_by!r}; retry that run instead",
                reason="PACK_RUN_ALREADY_RETRIED",
                metadata={"retriedBy": run.retried_by, "packRunId": run.pack_run_id},
            )
        steps = await uow.pack_runs.steps(pack_run_id)
        again = [step for step in steps if step.status != SUCCEEDED]
        names = {step.name for step in again}
        # what each re-run job re-runs: the old run's job, where it had one
        replays = {step.name: step.job_id for step in again if step.job_id is not None}
        fresh = [
            replace(
                step,
                position=position,
                depends_on=tuple(name for name in step.depends_on if name in names),
                job_id=None,
                started_at=None,
                finished_at=None,
                job_status=None,
                attempts=0,
            )
            for position, step in enumerate(again)
        ]
        view, woken = await _start_run(
            uow,
            call,
            tenant_id,
            run.pack_name,
            fresh,
            retry_of=pack_run_id,
            now=now,
            replays=replays,
        )
        # The dead-letter chain of each re-run job goes on from the job re-running it
        # (a job that ran had every dependency succeed: its re-run starts at once).
        started = {step.name: step.job_id for step in view.steps or () if step.job_id}
        await uow.pack_runs.replay_dead_letters(
            tenant_id,
            {
                old: started[step.name]
                for step in again
                if (old := step.job_id) is not None and step.name in started
            },
            now=now,
        )
        await uow.pack_runs.update_run(pack_run_id, now=now, retried_by=view.run.pack_run_id)
        await uow.events.append_many(
            [
                _run_event(
                    run, RETRIED_EVENT, {"retriedBy": view.run.pack_run_id}, call.trace_id, now
                )
            ]
        )
        counts = count_steps(steps)
        await audit.record(
            uow,
            call,
            PACK_RUN,
            before=PackRunView(run=run, steps=None, counts=counts),
            after=PackRunView(
                run=replace(run, retried_by=view.run.pack_run_id, updated_at=now),
                steps=None,
                counts=counts,
            ),
        )
    _announce(store, woken)
    return view


async def advance(store: Store, tenant_id: str, pack_run_id: str, *, now: datetime) -> bool:
    """Move one run forward (see the module docstring); True when anything changed."""
    async with store.transaction() as uow:
        try:
            run = await uow.pack_runs.lock(tenant_id, pack_run_id, project_id=None)
        except NotFound:
            return False
        steps = await uow.pack_runs.steps(pack_run_id)
        decided = plan(steps, run.status)
        if not decided.moves and decided.status == run.status:
            return False
        _, woken = await _apply(uow, run, steps, decided, now=now, trace_id=None)
    _announce(store, woken)
    return True


# --- reading ----------------------------------------------------------------------------


async def get_pack_run(store: Store, call: CallContext, *, pack_run_id: str) -> PackRunView:
    """The run with each job's progress. Raises NotFound (PACK_RUN_NOT_FOUND)."""
    tenant_id = call.require_tenant()
    _check_id(pack_run_id)
    return await store.pack_runs.get(tenant_id, pack_run_id, project_id=call.project_id)


async def list_pack_runs(
    store: Store,
    tokens: PageTokens,
    call: CallContext,
    *,
    status: str,
    pack_name: str,
    limit: int,
    continuation_token: str,
) -> Page[PackRunView]:
    """One page of the tenant's runs, newest first (createdAt desc, packRunId desc),
    with their counts. Raises InvalidArgument for a bad `status`, `packName`, `limit`
    or `continuationToken`."""
    tenant_id = call.require_tenant()
    violations: list[Violation] = []
    if status and status not in RUN_STATUSES:
        violations.append(
            Violation("status", f"must be one of {', '.join(RUN_STATUSES)}, got {shown(status)}")
        )
    if len(pack_name) > PACK_NAME_MAX:
        violations.append(Violation("packName", f"must be at most {PACK_NAME_MAX} characters"))
    elif has_control(pack_name):
        violations.append(Violation("packName", "must not contain control characters"))
    if violations:
        raise InvalidArgument.from_violations(violations)
    query = PackRunQuery(
        tenant_id=tenant_id,
        project_id=call.project_id,
        status=status or None,
        pack_name=pack_name or None,
    )
    return await PACK_RUN_LISTING.page(
        tokens, query, limit=limit, token=continuation_token, read=store.pack_runs.page
    )


# --- the engine -------------------------------------------------------------------------


@dataclass
class PackRunEngine:
    """Advances runs whose jobs ended: at once on a job-ending hint of a pack job, and
    every `interval_s` seconds whatever the hints did (`domain/job_endings.py`).
    `clock` is the engine's time in seconds since the epoch."""

    store: Store
    interval_s: float
    clock: Any = None
    _task: asyncio.Task[None] | None = None
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _unsubscribe: Any = None

    def _now(self) -> datetime:
        if self.clock is None:
            return datetime.now(UTC)
        return datetime.fromtimestamp(self.clock(), UTC)

    def _hint(self, endings: Sequence[JobEnding]) -> None:
        if any(ending.pack_run_id is not None for ending in endings):
            self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._unsubscribe = self.store.endings.subscribe(self._hint)
            self._task = asyncio.create_task(self._run(), name="pack-run-engine")

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run_once(self) -> int:
        """Advance every run that has an ended job; how many runs changed."""
        changed = 0
        while True:
            runs = await self.store.pack_runs.with_ended_jobs(ADVANCE_BATCH)
            moved = 0
            for tenant_id, pack_run_id in runs:
                try:
                    if await advance(self.store, tenant_id, pack_run_id, now=self._now()):
                        moved += 1
                except asyncio.CancelledError:
                    raise
                except Exception:  # one run's trouble (a deadlock victim, ...) stops no other
                    log.exception("pack run %s could not advance; retried next pass", pack_run_id)
            changed += moved
            if len(runs) < ADVANCE_BATCH or moved == 0:
                return changed

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # a database hiccup must not stop the engine
                log.exception("pack run engine pass failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)


def step_payload(step: PackStep) -> Any:
    """A step's payload as a JSON-ready value (None when it has none)."""
    return json.loads(step.payload) if step.payload is not None else None

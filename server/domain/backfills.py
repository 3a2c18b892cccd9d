"""Backfills (issue 10 point 6; DESIGN §4.2; seed 003: BackfillManager, DuplicateSuppressor,
EventTimeWindow): re-run a source or a job type over a past event-time window.

Scope. A request names `sourceId`, `jobType` or both; its scope is what duplicate
suppression compares:

- a scheduler source (`sourceId`; a jobType, if given, must be its template's): one job
  per cron tick in the window, built exactly as the scheduler loop builds it
  (`schedules.tick_request`), scope `source:{sourceId}`;
- another source with a `jobType`: one job per slice, scope
  `source:{sourceId}/jobType:{jobType}`;
- a `jobType` alone: one job per slice, enqueued by the tenant's `backfill` source
  (type `backfill`, registered by the first such request, in its transaction), scope
  `jobType:{jobType}`.

Slices are aligned to the slice size (BACKFILL_SLICE_SECONDS, 1 h by default) from
the Unix epoch, so the slices that cover [windowStart, windowEnd) are the same whatever
the window, and each slice's job (payload `{"windowStart", "windowEnd"}` of the slice,
eventTime its start) has the event-time key (`schedules.event_key`): a slice or tick
already enqueued, by the scheduler or an earlier backfill, is answered and counted as
`existing`, never enqueued again.

Suppression. A request whose scope equals an earlier backfill's and whose window
overlaps it is refused ALREADY_EXISTS (reason BACKFILL_DUPLICATE, metadata
`backfillId`) while that backfill is active (a job of it has not finished) or finished
less than the suppression window ago (BACKFILL_SUPPRESSION_SECONDS, 1 h). A canceled
backfill suppresses nothing. On PostgreSQL the check and the insert hold a
transaction-scoped advisory lock of (tenant, scope), so two identical requests cannot
both pass; SQLite serialises writers.

Everything a request does (the backfill, its jobs with their events, the links to the
jobs covering the window, the `backfill` source, the audit entry with the token's
backfill_reason/backfill_ticket) is one unit of work: a refused request writes nothing.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Protocol

from gateway.text import has_control
from server.domain import audit, schedules
from server.domain.context import CallContext
from server.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Violation,
    shown,
)
from server.domain.events import NewEvent
from server.domain.job_states import EVENT_TYPES, JobAction, JobStatus
from server.domain.jobs import (
    ID_PATTERN,
    EnqueueRequest,
    JobLimits,
    JobSpec,
    enqueue_within,
    validate_enqueue,
    validate_job_type,
)
from server.domain.pagination import TEXT, TIME, ListingSpec, Page, PageTokens, SortKey
from server.domain.resources import JOB, ResourceType
from server.domain.sources import SOURCE, Source

if TYPE_CHECKING:
    from server.domain.units import Store, UnitOfWork

ACTIVE, COMPLETED, CANCELED = "active", "completed", "canceled"
BACKFILL_SOURCE = "backfill"  # name and type of the source of jobType-only backfills
REASON_MAX, TICKET_MAX = 256, 128
WAITING = (JobStatus.QUEUED.value, JobStatus.THROTTLED.value, JobStatus.FAILED.value)
UNFINISHED = (*WAITING, JobStatus.LEASED.value)
_ID = re.compile(ID_PATTERN)


@dataclass(frozen=True, slots=True)
class BackfillLimits:
    """The server's backfill settings (server/config.py BACKFILL_*), in seconds."""

    max_window_s: float = 31 * 86_400.0
    slice_s: float = 3600.0
    max_jobs: int = 1000
    suppression_s: float = 3600.0


class BackfillLike(Protocol):
    """A backfill as read: a storage row or a `Backfill`."""

    @property
    def backfill_id(self) -> str: ...
    @property
    def tenant_id(self) -> str: ...
    @property
    def project_id(self) -> str | None: ...
    @property
    def scope(self) -> str: ...
    @property
    def source_id(self) -> str: ...
    @property
    def job_type(self) -> str: ...
    @property
    def window_start(self) -> datetime: ...
    @property
    def window_end(self) -> datetime: ...
    @property
    def reason(self) -> str: ...
    @property
    def ticket(self) -> str | None: ...
    @property
    def status(self) -> str: ...
    @property
    def slice_s(self) -> float | None: ...
    @property
    def jobs_created(self) -> int: ...
    @property
    def jobs_existing(self) -> int: ...
    @property
    def created_by(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def updated_at(self) -> datetime: ...


@dataclass(frozen=True, slots=True)
class Backfill:
    """A backfill as the domain writes it: the columns of `backfills` (BackfillRow).
    `status` is stored as active or canceled; completed is read off its jobs."""

    backfill_id: str
    tenant_id: str
    project_id: str | None
    scope: str
    source_id: str
    job_type: str
    window_start: datetime
    window_end: datetime
    reason: str
    ticket: str | None
    status: str
    slice_s: float | None
    jobs_created: int
    jobs_existing: int
    created_by: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class BackfillRequest:
    """A backfill as the caller asked for it; None/"" mean absent."""

    source_id: str
    job_type: str
    window_start: datetime | None
    window_end: datetime | None
    reason: str
    ticket: str


@dataclass(frozen=True, slots=True)
class JobCounts:
    """The jobs linked to one backfill by status (None: pruned), and the latest
    finish time among them."""

    by_status: Mapping[str | None, int]
    last_finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class Progress:
    """A backfill's jobs: `created` + `existing` = `total`; by status; `pruned`."""

    total: int
    created: int
    existing: int
    by_status: Mapping[str, int]
    pruned: int


@dataclass(frozen=True, slots=True)
class BackfillView:
    """A backfill with what its jobs say: its status, progress and finish time."""

    backfill: BackfillLike
    status: str
    progress: Progress
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class BackfillQuery:
    """A listing's narrowing; None means "any"."""

    tenant_id: str
    project_id: str | None = None
    source_id: str | None = None
    job_type: str | None = None


@dataclass(frozen=True, slots=True)
class CanceledJob:
    """A waiting job a backfill's cancel canceled: its id, status before and attempts."""

    job_id: str
    status: str
    attempts: int


class BackfillRepository(Protocol):
    """Backfills inside a unit of work."""

    async def lock_scope(self, tenant_id: str, scope: str) -> None:
        """Serialise requests of one (tenant, scope) until the transaction ends
        (a PostgreSQL advisory lock; SQLite serialises writers already)."""
        ...

    async def overlapping(
        self, tenant_id: str, scope: str, start: datetime, end: datetime
    ) -> Sequence[Backfill]:
        """The tenant's backfills of `scope`, not canceled, whose window overlaps
        [start, end), newest first."""
        ...

    async def add(self, backfill: Backfill, jobs: Sequence[tuple[str, bool]]) -> None:
        """Insert `backfill` and its links to the jobs (job id, created by it)."""
        ...

    async def get(
        self, tenant_id: str, backfill_id: str, *, project_id: str | None, lock: bool = False
    ) -> Backfill:
        """The backfill to change; NotFound (BACKFILL_NOT_FOUND) when absent or not the
        caller's."""
        ...

    async def counts(self, backfill_ids: Sequence[str]) -> Mapping[str, JobCounts]:
        """The linked jobs of each backfill by status."""
        ...

    async def cancel_waiting(self, backfill_id: str, *, now: datetime) -> Sequence[CanceledJob]:
        """Cancel the waiting jobs (queued, throttled, failed) the backfill created:
        finished now, no eligibility; the jobs canceled."""
        ...

    async def update(self, backfill: Backfill) -> None:
        """Store the backfill's new status and update time."""
        ...


class BackfillReads(Protocol):
    """Backfills outside a transaction: one round trip each."""

    async def get(
        self, tenant_id: str, backfill_id: str, *, project_id: str | None
    ) -> BackfillLike:
        """As `BackfillRepository.get`, for reading."""
        ...

    async def page(
        self, query: BackfillQuery, after: tuple[Any, ...] | None, limit: int
    ) -> Sequence[BackfillLike]:
        """Up to `limit + 1` backfills of `query` after the position `after`
        (created_at, backfill_id) in `BACKFILL_LISTING`'s order, newest first."""
        ...

    async def counts(self, backfill_ids: Sequence[str]) -> Mapping[str, JobCounts]:
        """As `BackfillRepository.counts`, for reading."""
        ...


def _span(seconds: float) -> str:
    """A window's length as an operator reads it: `31 days`, `1 day 2 h 30 min`,
    `90.5 s`, `31 days 0.000001 s` (days, hours, minutes, seconds to the microsecond;
    the parts that are not zero; never an exponent)."""
    whole = int(seconds)
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    fraction = round(secs + seconds - whole, 6)  # microseconds: what a timestamp holds
    parts = [f"{days} day{'s' if days != 1 else ''}"] if days else []
    parts += [f"{hours} h"] if hours else []
    parts += [f"{minutes} min"] if minutes else []
    parts += [f"{fraction:.6f}".rstrip("0").rstrip(".") + " s"] if fraction else []
    return " ".join(parts) or "0 s"


def _stamp(value: datetime) -> str:
    return _aware(value).isoformat().replace("+00:00", "Z")


def snapshot(backfill: BackfillLike) -> Mapping[str, Any]:
    """The audited view of a backfill."""
    return {
        "backfillId": backfill.backfill_id,
        "sourceId": backfill.source_id,
        "jobType": backfill.job_type,
        "windowStart": _stamp(backfill.window_start),
        "windowEnd": _stamp(backfill.window_end),
        "reason": backfill.reason,
        "ticket": backfill.ticket,
        "status": backfill.status,
        "jobsCreated": backfill.jobs_created,
        "jobsExisting": backfill.jobs_existing,
        "projectId": backfill.project_id,
    }


BACKFILL: ResourceType[BackfillLike] = ResourceType(
    singular="backfill",
    collection="backfills",
    id_field="backfillId",
    id_of=lambda backfill: backfill.backfill_id,
    snapshot=snapshot,
)

BACKFILL_LISTING: ListingSpec[BackfillLike, BackfillQuery] = ListingSpec(
    name="backfills",
    sort=(SortKey("-createdAt", "created_at", TIME), SortKey("-backfillId", "backfill_id", TEXT)),
    filters={"project": "project_id", "sourceId": "source_id", "jobType": "job_type"},
)


# --- validation ---------------------------------------------------------------------


EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)  # the earliest windowStart


def _validate(
    request: BackfillRequest, limits: BackfillLimits, call: CallContext, now: datetime
) -> tuple[datetime, datetime, str, str | None]:
    """The window, reason and ticket; InvalidArgument naming every bad field."""
    violations: list[Violation] = []
    if not request.source_id and not request.job_type:
        violations.append(Violation("sourceId", "is required when jobType is absent"))
    if request.job_type and (bad := validate_job_type(request.job_type)) is not None:
        violations.append(bad)
    start, end = request.window_start, request.window_end
    if start is None:
        violations.append(Violation("windowStart", "is required"))
    if end is None:
        violations.append(Violation("windowEnd", "is required"))
    if start is not None and _aware(start) < EPOCH:
        # Slices are aligned from the epoch, and a cron tick search steps back from the
        # start in the source's time zone: near year 1 that left datetime's range (500).
        violations.append(
            Violation("windowStart", f"must not be before {_stamp(EPOCH)}, got {_stamp(start)}")
        )
    if start is not None and end is not None:
        span = (end - start).total_seconds()
        if span < 0:
            violations.append(
                Violation(
                    "windowEnd",
                    f"must be after windowStart ({_stamp(start)}): the window is inverted, "
                    f"got {_stamp(end)}",
                )
            )
        elif span == 0:
            violations.append(
                Violation("windowEnd", "must be after windowStart: the window is empty")
            )
        elif span > limits.max_window_s:
            violations.append(
                Violation(
                    "windowEnd",
                    f"must be at most {_span(limits.max_window_s)} after windowStart (the"
                    f" server's maximum window), got a window of {_span(span)}",
                )
            )
        if end > now:
            violations.append(
                Violation("windowEnd", f"must not be in the future (now is {_stamp(now)})")
            )
    reason = request.reason or call.control.backfill_reason or call.operator_reason or ""
    ticket = request.ticket or call.control.backfill_ticket or None
    if len(reason) > REASON_MAX:
        violations.append(Violation("reason", f"must be at most {REASON_MAX} characters"))
    elif has_control(reason):
        violations.append(Violation("reason", "must not contain control characters"))
    if ticket is not None and len(ticket) > TICKET_MAX:
        violations.append(Violation("ticket", f"must be at most {TICKET_MAX} characters"))
    elif ticket is not None and has_control(ticket):
        violations.append(Violation("ticket", "must not contain control characters"))
    if violations:
        raise InvalidArgument.from_violations(violations)
    assert start is not None and end is not None
    return start, end, reason, ticket


def slices(start: datetime, end: datetime, size_s: float) -> list[tuple[datetime, datetime]]:
    """The slices of `size_s` seconds, aligned from the Unix epoch, covering [start, end).

    Counted in whole microseconds, not float seconds: a float timestamp loses the
    microseconds (a one-microsecond window far from the epoch covered no slice at all:
    an empty backfill, "completed" with no job)."""
    size = timedelta(seconds=size_s)
    first = (start - EPOCH) // size
    last = -((EPOCH - end) // size)  # ceiling division
    return [(EPOCH + i * size, EPOCH + (i + 1) * size) for i in range(first, last)]


def _too_many(what: str, limits: BackfillLimits) -> InvalidArgument:
    """`what` is how many the window covers ("2000 slices", "more than 1000 cron ticks")."""
    return InvalidArgument.of(
        "windowEnd",
        f"the window covers {what}, more than the server's {limits.max_jobs} jobs per "
        "backfill; request a shorter window",
    )


# --- writing ------------------------------------------------------------------------


async def create_backfill(
    store: Store,
    call: CallContext,
    request: BackfillRequest,
    limits: BackfillLimits,
    job_limits: JobLimits,
    *,
    now: datetime,
) -> BackfillView:
    """Request a backfill: enqueue the jobs covering the window (see the module
    docstring) and answer it with its progress.

    Raises InvalidArgument (every bad field), NotFound (SOURCE_NOT_FOUND),
    FailedPrecondition (SOURCE_PAUSED, SOURCE_DISABLED), AlreadyExists
    (BACKFILL_DUPLICATE, metadata backfillId).
    """
    tenant_id = call.require_tenant()
    start, end, reason, ticket = _validate(request, limits, call, now)
    async with store.transaction() as uow:
        source = await _source(uow, call, request, now)
        schedule = None
        if source.source_type == schedules.SCHEDULER_SOURCE_TYPE:
            schedule = await uow.schedules.get(tenant_id, source.source_id)
        if schedule is not None:
            if request.job_type and request.job_type != schedule.job_type:
                raise InvalidArgument.of(
                    "jobType",
                    f"must be the scheduler source's template job type {schedule.job_type!r} "
                    f"or absent, got {shown(request.job_type)}",
                )
            job_type, scope = schedule.job_type, f"source:{source.source_id}"
        elif not request.job_type:
            raise InvalidArgument.of("jobType", "is required for a source that is not a scheduler")
        elif request.source_id:
            job_type = request.job_type
            scope = f"source:{source.source_id}/jobType:{job_type}"
        else:
            job_type, scope = request.job_type, f"jobType:{request.job_type}"
        await uow.backfills.lock_scope(tenant_id, scope)
        await _suppress(uow, tenant_id, scope, start, end, limits, now)
        specs = _specs(schedule, source.source_id, job_type, start, end, limits, job_limits)
        backfill = Backfill(
            backfill_id=str(uuid.uuid4()),
            tenant_id=tenant_id,
            project_id=call.project_id,
            scope=scope,
            source_id=source.source_id,
            job_type=job_type,
            window_start=start,
            window_end=end,
            reason=reason,
            ticket=ticket,
            status=ACTIVE,
            slice_s=None if schedule is not None else limits.slice_s,
            jobs_created=0,
            jobs_existing=0,
            created_by=call.actor,
            created_at=now,
            updated_at=now,
        )
        links = await _enqueue(uow, call, specs, now)
        created = sum(1 for _, made in links if made)
        backfill = replace(backfill, jobs_created=created, jobs_existing=len(links) - created)
        await uow.backfills.add(backfill, links)
        await audit.record(uow, call, BACKFILL, before=None, after=backfill)
        counts = await uow.backfills.counts([backfill.backfill_id])
    if created:
        store.notify_work(tenant_id, job_type, created)
    return view(backfill, counts.get(backfill.backfill_id))


async def _source(
    uow: UnitOfWork, call: CallContext, request: BackfillRequest, now: datetime
) -> Source:
    """The source named, or the tenant's `backfill` source (registered now when absent)
    for a jobType alone; NotFound, or FailedPrecondition when it may not enqueue."""
    tenant_id = call.require_tenant()
    if request.source_id:
        if not _ID.fullmatch(request.source_id):
            raise NotFound.of(SOURCE, request.source_id)
        source = await uow.sources.get(tenant_id, request.source_id, project_id=call.project_id)
    else:
        found = await uow.sources.find_by_name(tenant_id, BACKFILL_SOURCE)
        if found is None:
            found = Source(
                source_id=str(uuid.uuid4()),
                tenant_id=tenant_id,
                project_id=call.project_id,
                name=BACKFILL_SOURCE,
                source_type=BACKFILL_SOURCE,
                enabled=True,
                paused=False,
                created_at=now,
                updated_at=now,
            )
            await uow.sources.add(found)
        elif found.source_type != BACKFILL_SOURCE:
            raise FailedPrecondition(
                f"the tenant's source named {BACKFILL_SOURCE!r} is of type "
                f"{found.source_type!r}; a jobType-only backfill needs it to be of type "
                f"{BACKFILL_SOURCE!r}: name a source instead",
                reason="BACKFILL_SOURCE_CONFLICT",
                metadata={"sourceId": found.source_id},
            )
        source = found
    if not source.enabled:
        raise FailedPrecondition(
            f"source {source.source_id!r} is disabled; it cannot enqueue jobs",
            reason="SOURCE_DISABLED",
            metadata={"sourceId": source.source_id},
        )
    if source.paused:
        raise FailedPrecondition(
            f"source {source.source_id!r} is paused; resume it to backfill it",
            reason="SOURCE_PAUSED",
            metadata={"sourceId": source.source_id},
        )
    return source


async def _suppress(
    uow: UnitOfWork,
    tenant_id: str,
    scope: str,
    start: datetime,
    end: datetime,
    limits: BackfillLimits,
    now: datetime,
) -> None:
    """AlreadyExists naming the newest overlapping backfill of the scope that is active
    or finished within the suppression window (seed 003's DuplicateSuppressor)."""
    candidates = await uow.backfills.overlapping(tenant_id, scope, start, end)
    if not candidates:
        return
    counts = await uow.backfills.counts([b.backfill_id for b in candidates])
    recent = now - timedelta(seconds=limits.suppression_s)
    for candidate in candidates:
        found = view(candidate, counts.get(candidate.backfill_id))
        if found.status == ACTIVE or (found.finished_at is not None and found.finished_at > recent):
            raise AlreadyExists(
                f"backfill {candidate.backfill_id!r} ({found.status}) already covers "
                f"[{_stamp(candidate.window_start)}, {_stamp(candidate.window_end)}) for this "
                "scope, overlapping the requested window; wait for it, or cancel it first",
                reason="BACKFILL_DUPLICATE",
                metadata={"backfillId": candidate.backfill_id, "status": found.status},
            )


def _specs(
    schedule: schedules.Schedule | None,
    source_id: str,
    job_type: str,
    start: datetime,
    end: datetime,
    limits: BackfillLimits,
    job_limits: JobLimits,
) -> list[JobSpec]:
    if schedule is not None:
        found = schedules.ticks(
            schedule.cron, schedule.time_zone, start, end, limit=limits.max_jobs
        )
        if len(found) > limits.max_jobs:
            raise _too_many(f"more than {limits.max_jobs} cron ticks", limits)
        return [validate_enqueue(schedules.tick_request(schedule, t), job_limits) for t in found]
    covering = slices(start, end, limits.slice_s)
    if len(covering) > limits.max_jobs:
        raise _too_many(f"{len(covering)} slices", limits)
    return [
        validate_enqueue(
            EnqueueRequest(
                job_type=job_type,
                source_id=source_id,
                has_payload=True,
                payload={"windowStart": _stamp(s), "windowEnd": _stamp(e)},
                idempotency_key=schedules.event_key(source_id, job_type, s),
                event_time=s,
            ),
            job_limits,
        )
        for s, e in covering
    ]


async def _enqueue(
    uow: UnitOfWork, call: CallContext, specs: Sequence[JobSpec], now: datetime
) -> list[tuple[str, bool]]:
    """Enqueue `specs`; (job id, created) per spec. A key already held with another body
    (a tick enqueued under an older template) is that job, existing."""
    items = await enqueue_within(uow, call, specs, now)
    links: list[tuple[str, bool]] = []
    conflicts: list[str] = []
    for spec, item in zip(specs, items, strict=True):
        if item.enqueued is not None:
            links.append((item.enqueued.job.job_id, item.enqueued.created))
        elif item.error is not None and item.error.reason == "JOB_EXISTS":
            conflicts.append(spec.idempotency_key or "")
        elif item.error is not None:
            raise item.error
    if conflicts:
        tenant_id = call.require_tenant()
        links += [(job.job_id, False) for job in await uow.jobs.by_keys(tenant_id, conflicts)]
    return links


async def cancel_backfill(
    store: Store, call: CallContext, *, backfill_id: str, now: datetime
) -> BackfillView:
    """Cancel a backfill: its waiting jobs are canceled (each with its event), leased ones
    run on. Canceling a canceled backfill changes nothing and answers it.

    Raises NotFound (BACKFILL_NOT_FOUND), FailedPrecondition (BACKFILL_STATUS_CONFLICT:
    it completed).
    """
    tenant_id = call.require_tenant()
    _check_id(backfill_id)
    async with store.transaction() as uow:
        before = await uow.backfills.get(
            tenant_id, backfill_id, project_id=call.project_id, lock=True
        )
        after = before
        if before.status != CANCELED:
            counts = await uow.backfills.counts([backfill_id])
            current = view(before, counts.get(backfill_id))
            if current.status == COMPLETED:
                raise FailedPrecondition(
                    f"backfill is {COMPLETED}; only an active backfill can be canceled",
                    reason="BACKFILL_STATUS_CONFLICT",
                    metadata={"status": COMPLETED, "backfillId": backfill_id},
                )
            canceled = await uow.backfills.cancel_waiting(backfill_id, now=now)
            await uow.events.append_many(
                [
                    NewEvent(
                        tenant_id=tenant_id,
                        type=EVENT_TYPES[JobAction.CANCEL],
                        subject=JOB.name(job.job_id),
                        data={
                            "from": job.status,
                            "to": JobStatus.CANCELED.value,
                            "attempt": job.attempts,
                            "backfillId": backfill_id,
                        },
                        trace_id=call.trace_id,
                        time=now,
                    )
                    for job in canceled
                ]
            )
            after = replace(before, status=CANCELED, updated_at=now)
            await uow.backfills.update(after)
        await audit.record(uow, call, BACKFILL, before=before, after=after)
        counts = await uow.backfills.counts([backfill_id])
    return view(after, counts.get(backfill_id))


# --- reading ------------------------------------------------------------------------


def view(backfill: BackfillLike, counts: JobCounts | None) -> BackfillView:
    """The backfill with its status and progress read off its jobs' `counts`."""
    by_status = dict(counts.by_status) if counts is not None else {}
    pruned = by_status.pop(None, 0)
    statuses = {status.value: by_status.get(status.value, 0) for status in JobStatus}
    unfinished = sum(statuses[status] for status in UNFINISHED)
    finished_at: datetime | None = None
    if backfill.status == CANCELED:
        status = CANCELED
    elif unfinished:
        status = ACTIVE
    else:
        status = COMPLETED
        # Never before it was requested: a backfill whose jobs all existed and had
        # finished long before finishes when it is requested.
        last = counts.last_finished_at if counts is not None else None
        created = _aware(backfill.created_at)
        finished_at = max(_aware(last), created) if last is not None else created
    progress = Progress(
        total=backfill.jobs_created + backfill.jobs_existing,
        created=backfill.jobs_created,
        existing=backfill.jobs_existing,
        by_status=statuses,
        pruned=pruned,
    )
    return BackfillView(
        backfill=backfill, status=status, progress=progress, finished_at=finished_at
    )


async def get_backfill(store: Store, call: CallContext, *, backfill_id: str) -> BackfillView:
    """Raises NotFound (BACKFILL_NOT_FOUND)."""
    tenant_id = call.require_tenant()
    _check_id(backfill_id)
    backfill = await store.backfills.get(tenant_id, backfill_id, project_id=call.project_id)
    counts = await store.backfills.counts([backfill_id])
    return view(backfill, counts.get(backfill_id))


async def list_backfills(
    store: Store,
    tokens: PageTokens,
    call: CallContext,
    *,
    source_id: str,
    job_type: str,
    limit: int,
    continuation_token: str,
) -> Page[BackfillView]:
    """One page of the tenant's backfills, newest first (createdAt desc, backfillId
    desc). Raises InvalidArgument for a bad `sourceId`, `jobType`, `limit` or
    `continuationToken`."""
    tenant_id = call.require_tenant()
    violations: list[Violation] = []
    if source_id and not _ID.fullmatch(source_id):
        violations.append(
            Violation("sourceId", "must be 1 to 64 letters, digits, '.', '_', ':' or '-'")
        )
    if job_type and (bad := validate_job_type(job_type)) is not None:
        violations.append(bad)
    if violations:
        raise InvalidArgument.from_violations(violations)
    query = BackfillQuery(
        tenant_id=tenant_id,
        project_id=call.project_id,
        source_id=source_id or None,
        job_type=job_type or None,
    )
    page = await BACKFILL_LISTING.page(
        tokens, query, limit=limit, token=continuation_token, read=store.backfills.page
    )
    counts = await store.backfills.counts([b.backfill_id for b in page.items])
    return Page(
        items=[view(b, counts.get(b.backfill_id)) for b in page.items],
        continuation_token=page.continuation_token,
    )


def _check_id(backfill_id: str) -> None:
    if not _ID.fullmatch(backfill_id):
        raise NotFound.of(BACKFILL, backfill_id)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)

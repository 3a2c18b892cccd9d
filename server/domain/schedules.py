"""Schedules (issue 10 point 5; DESIGN §9): scheduler sources enqueue one job per cron tick.

A source of type `scheduler` carries a schedule: a cron expression read in an IANA time
zone, a job template and a misfire policy. The schedule is a row with a due time,
`nextRunAt`, the next tick. The scheduler loop of every replica (`fire_due`, run by
`server/storage/scheduler_loop.py`) claims due rows with `FOR UPDATE SKIP LOCKED` in
one transaction, enqueues their ticks' jobs and moves `nextRunAt` past now, so a tick
fires once however many replicas run; each tick's job also carries the event-time
idempotency key `event:{sourceId}:{jobType}:{eventTime}` (`event_key`), which a second
enqueue of the tick (a lost race, a backfill of the window) answers instead of
repeating.

Misfires. A tick is missed when it is handled more than the grace (60 s by default,
SCHEDULE_MISFIRE_GRACE_SECONDS) after it was due, e.g. after every replica was down.
`skip` drops missed ticks; `run_once` runs one job for all of them, for the latest
missed tick. Ticks within the grace run as usual. Planning is O(1) in the downtime:
the latest missed tick is found by iterating backwards from the cut-off.

Cron syntax is cronsim's (five fields, or six with seconds first; `L`, `#`, names of
months and weekdays), plus the macros `@yearly`, `@annually`, `@monthly`, `@weekly`,
`@daily`, `@midnight` and `@hourly`. Daylight-saving changes follow Debian cron
(cronsim's documented behaviour).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo, available_timezones

from cronsim import CronSim, CronSimError

from server.domain.context import CallContext
from server.domain.errors import InvalidArgument, Violation, shown
from server.domain.jobs import (
    BackoffRequest,
    EnqueueRequest,
    JobLimits,
    JobSpec,
    enqueue_within,
    validate_enqueue,
)

if TYPE_CHECKING:
    from server.domain.units import Store

log = logging.getLogger("orchestrator.scheduler")

SCHEDULER_SOURCE_TYPE = "scheduler"
SKIP, RUN_ONCE = "skip", "run_once"
MISFIRE_POLICIES = (SKIP, RUN_ONCE)
DEFAULT_TIME_ZONE = "UTC"
CRON_MAX = 200
MISFIRE_GRACE_DEFAULT_S = 60.0
# Schedules claimed per transaction of the scheduler loop.
FIRE_BATCH = 100
# A stored schedule this host cannot plan (its zone gone from the machine's zone
# database, say): logged and tried again this much later, never failing the pass
# (and with it every other tenant's schedules).
UNPLANNABLE_RETRY = timedelta(minutes=1)
# The request field of the schedule (RegisterSourceRequest.schedule); violations of
# the template name `schedule.jobTemplate.<field>`.
FIELD = "schedule"
_TEMPLATE = f"{FIELD}.jobTemplate"
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MICRO = timedelta(microseconds=1)


class ScheduleLike(Protocol):
    """A schedule as read: a storage row or a `Schedule`."""

    @property
    def source_id(self) -> str: ...
    @property
    def cron(self) -> str: ...
    @property
    def time_zone(self) -> str: ...
    @property
    def misfire_policy(self) -> str: ...
    @property
    def job_type(self) -> str: ...
    @property
    def priority(self) -> int: ...
    @property
    def payload(self) -> str | None: ...
    @property
    def max_attempts(self) -> int: ...
    @property
    def backoff_initial_s(self) -> float: ...
    @property
    def backoff_max_s(self) -> float: ...
    @property
    def backoff_multiplier(self) -> float: ...
    @property
    def backoff_jitter(self) -> float: ...
    @property
    def next_run_at(self) -> datetime: ...
    @property
    def last_run_at(self) -> datetime | None: ...


@dataclass(frozen=True, slots=True)
class Schedule:
    """A schedule as the domain writes it: the columns of `schedules` (ScheduleRow);
    the template with its defaults applied, `payload` as canonical JSON text."""

    source_id: str
    tenant_id: str
    project_id: str | None
    cron: str
    time_zone: str
    misfire_policy: str
    job_type: str
    priority: int
    payload: str | None
    max_attempts: int
    backoff_initial_s: float
    backoff_max_s: float
    backoff_multiplier: float
    backoff_jitter: float
    next_run_at: datetime
    last_run_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ScheduleRequest:
    """A schedule as the caller sent it; `template.source_id` is ignored."""

    cron: str
    time_zone: str
    misfire_policy: str
    template: EnqueueRequest | None


@dataclass(frozen=True, slots=True)
class Plan:
    """What one due schedule does now: enqueue `ticks` (oldest first; may be empty) and
    wait for `next_run_at` (None: the expression never fires again)."""

    ticks: tuple[datetime, ...]
    next_run_at: datetime | None
    missed: bool  # ticks were missed (handled by the misfire policy)


@dataclass(frozen=True, slots=True)
class FireReport:
    """One pass of the scheduler: schedules handled, jobs enqueued, and schedules whose
    missed ticks (or a paused or disabled source's ticks) were skipped."""

    schedules: int = 0
    enqueued: int = 0
    skipped: int = 0


class ScheduleRepository(Protocol):
    """Schedules inside a unit of work."""

    async def add(self, schedule: Schedule) -> None:
        """Insert the schedule of a source registered in the same unit of work."""
        ...

    async def get(self, tenant_id: str, source_id: str) -> Schedule | None:
        """The schedule of a source of the tenant, or None."""
        ...

    async def claim_due(self, now: datetime, limit: int) -> Sequence[Schedule]:
        """Up to `limit` schedules due at `now` (next_run_at <= now), oldest first,
        locked for this transaction and skipped by every other (SKIP LOCKED)."""
        ...

    async def advance(
        self,
        source_id: str,
        *,
        next_run_at: datetime | None,
        last_run_at: datetime | None,
        now: datetime,
    ) -> None:
        """Store the schedule's next due time (None: far future, it never fires again)
        and its last enqueued tick (None: unchanged)."""
        ...


class ScheduleReads(Protocol):
    """Schedules outside a transaction."""

    async def of_sources(
        self, tenant_id: str, source_ids: Sequence[str]
    ) -> Mapping[str, ScheduleLike]:
        """The schedules of `source_ids` that have one, by source id."""
        ...


# --- cron ---------------------------------------------------------------------------


# Names the machine's zone database holds that are no place's time: `localtime` is
# whatever /etc/localtime of the serving host says (replicas could disagree),
# `Factory` tzdata's "-00" placeholder and `posixrules` its template for POSIX TZ
# strings. A new schedule names a place (IANA tz database, theory.html "Names of
# timezones"); one stored before they were refused keeps its zone (`zone` reads it).
NOT_PLACES = frozenset({"localtime", "Factory", "posixrules"})


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


@lru_cache(maxsize=512)
def zone(name: str) -> tzinfo:
    """The time zone `name` of the machine's zone database ("UTC" when empty), a
    stored schedule's `NOT_PLACES` name included. Raises KeyError for another name."""
    name = name or DEFAULT_TIME_ZONE
    if name == "UTC":
        return UTC
    if name not in _zone_names():
        raise KeyError(name)
    return ZoneInfo(name)


def expression(cron: str) -> str:
    """`cron` with a macro spelled out (`@daily` -> `0 0 * * *`)."""
    return MACROS.get(cron.strip().lower(), cron)


def _iterate(cron: str, time_zone: str, start: datetime, *, reverse: bool) -> Iterator[datetime]:
    for tick in CronSim(expression(cron), start.astimezone(zone(time_zone)), reverse=reverse):
        yield tick.astimezone(UTC)


def next_tick(cron: str, time_zone: str, after: datetime) -> datetime | None:
    """The first tick strictly after `after` (UTC), or None when there is none."""
    return next(_iterate(cron, time_zone, after, reverse=False), None)


def last_tick(cron: str, time_zone: str, at_or_before: datetime) -> datetime | None:
    """The latest tick at or before `at_or_before` (UTC), or None."""
    return next(_iterate(cron, time_zone, at_or_before + _MICRO, reverse=True), None)


def ticks(
    cron: str, time_zone: str, start: datetime, end: datetime, *, limit: int
) -> list[datetime]:
    """The ticks in [start, end), oldest first, at most `limit + 1` of them (one more
    than `limit` says the window holds more)."""
    found: list[datetime] = []
    for tick in _iterate(cron, time_zone, start - _MICRO, reverse=False):
        if tick >= end or len(found) > limit:
            break
        found.append(tick)
    return found


def event_key(source_id: str, job_type: str, event_time: datetime) -> str:
    """The idempotency key of the job of `source_id` and `job_type` for `event_time`:
    one job per tick or slice, whoever enqueues it (scheduler loop or backfill)."""
    stamp = event_time.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return f"event:{source_id}:{job_type}:{stamp}"


# --- validation ---------------------------------------------------------------------


def validate_schedule(
    request: ScheduleRequest, limits: JobLimits, *, source_id: str, now: datetime
) -> tuple[Schedule, JobSpec]:
    """The schedule of a new scheduler source `source_id` (tenant fields left empty for
    the caller), with its first due tick after `now`. Raises InvalidArgument naming
    every bad field as `schedule.<field>` (`schedule.jobTemplate.<field>`)."""
    violations: list[Violation] = []
    cron = request.cron.strip()
    time_zone = request.time_zone or DEFAULT_TIME_ZONE
    policy = request.misfire_policy or SKIP
    first: datetime | None = None
    zone_ok = True
    try:
        if time_zone in NOT_PLACES:
            raise KeyError(time_zone)
        zone(time_zone)
    except KeyError:
        zone_ok = False
        violations.append(
            Violation(
                f"{FIELD}.timeZone", f"must be an IANA time zone name, got {shown(time_zone)}"
            )
        )
    if not cron:
        violations.append(Violation(f"{FIELD}.cron", "is required"))
    elif len(cron) > CRON_MAX:
        violations.append(Violation(f"{FIELD}.cron", f"must be at most {CRON_MAX} characters"))
    else:
        try:
            CronSim(expression(cron), now)
        except (CronSimError, ValueError) as error:
            violations.append(
                Violation(
                    f"{FIELD}.cron",
                    f"is not a cron expression ({error}): five fields (minute hour "
                    f"day-of-month month day-of-week) or a macro such as @daily, got {shown(cron)}",
                )
            )
        else:
            if zone_ok:
                first = next_tick(cron, time_zone, now)
                if first is None:
                    violations.append(Violation(f"{FIELD}.cron", f"never fires, got {shown(cron)}"))
    if policy not in MISFIRE_POLICIES:
        violations.append(
            Violation(
                f"{FIELD}.misfirePolicy",
                f"must be one of {', '.join(MISFIRE_POLICIES)}, got {shown(policy)}",
            )
        )
    spec: JobSpec | None = None
    if request.template is None:
        violations.append(Violation(_TEMPLATE, "is required"))
    else:
        template = _with(request.template, source_id=source_id or "-")
        try:
            spec = validate_enqueue(template, limits)
        except InvalidArgument as error:
            violations += [
                Violation(f"{_TEMPLATE}.{v.field.removeprefix('job.')}", v.description)
                for v in error.violations
            ]
        else:
            if template.idempotency_key is not None or template.run_at is not None:
                violations.append(
                    Violation(
                        _TEMPLATE, "must not set idempotencyKey or runAt: each tick has its own"
                    )
                )
    if violations:
        raise InvalidArgument.from_violations(violations)
    assert spec is not None and first is not None
    schedule = Schedule(
        source_id=source_id,
        tenant_id="",
        project_id=None,
        cron=cron,
        time_zone=time_zone,
        misfire_policy=policy,
        job_type=spec.job_type,
        priority=spec.priority,
        payload=spec.payload,
        max_attempts=spec.max_attempts,
        backoff_initial_s=spec.backoff_initial_s,
        backoff_max_s=spec.backoff_max_s,
        backoff_multiplier=spec.backoff_multiplier,
        backoff_jitter=spec.backoff_jitter,
        next_run_at=first,
        last_run_at=None,
        created_at=now,
        updated_at=now,
    )
    return schedule, spec


def _with(request: EnqueueRequest, *, source_id: str) -> EnqueueRequest:
    return EnqueueRequest(
        job_type=request.job_type,
        source_id=source_id,
        priority=request.priority,
        has_payload=request.has_payload,
        payload=request.payload,
        max_attempts=request.max_attempts,
        run_at=request.run_at,
        idempotency_key=request.idempotency_key,
        pack_run_id=request.pack_run_id,
        backoff=request.backoff,
        event_time=request.event_time,
    )


def tick_request(schedule: ScheduleLike, tick: datetime) -> EnqueueRequest:
    """The enqueue request of `schedule`'s job for `tick`: its template, eventTime the
    tick, the event-time key. The scheduler loop and a backfill build the very same
    request, so the second answers the first's job."""
    payload: Any = None if schedule.payload is None else json.loads(schedule.payload)
    return EnqueueRequest(
        job_type=schedule.job_type,
        source_id=schedule.source_id,
        priority=schedule.priority,
        has_payload=schedule.payload is not None,
        payload=payload,
        max_attempts=schedule.max_attempts,
        idempotency_key=event_key(schedule.source_id, schedule.job_type, tick),
        backoff=BackoffRequest(
            initial_delay_s=schedule.backoff_initial_s,
            max_delay_s=schedule.backoff_max_s,
            multiplier=schedule.backoff_multiplier,
            jitter=schedule.backoff_jitter,
        ),
        event_time=tick,
    )


def snapshot(schedule: ScheduleLike) -> Mapping[str, Any]:
    """The audited view of a schedule (a scheduler source's registration)."""
    return {
        "cron": schedule.cron,
        "timeZone": schedule.time_zone,
        "misfirePolicy": schedule.misfire_policy,
        "jobType": schedule.job_type,
        "priority": schedule.priority,
        "maxAttempts": schedule.max_attempts,
    }


# --- firing -------------------------------------------------------------------------


def plan(schedule: ScheduleLike, now: datetime, grace: timedelta) -> Plan:
    """The ticks `schedule` enqueues at `now` (see the module docstring): those due
    within the grace, and with `run_once` the latest missed tick; the next due tick."""
    due = _aware(schedule.next_run_at)
    cutoff = now - grace
    on_time = ticks(
        schedule.cron, schedule.time_zone, max(due, cutoff + _MICRO), now + _MICRO, limit=1000
    )
    chosen: list[datetime] = []
    missed = due <= cutoff
    if missed:
        latest = last_tick(schedule.cron, schedule.time_zone, cutoff)
        if latest is not None and schedule.misfire_policy == RUN_ONCE:
            chosen.append(latest)
    chosen += on_time
    return Plan(
        ticks=tuple(chosen),
        next_run_at=next_tick(schedule.cron, schedule.time_zone, now),
        missed=missed,
    )


async def fire_due(
    store: Store,
    limits: JobLimits,
    *,
    now: datetime,
    grace: timedelta = timedelta(seconds=MISFIRE_GRACE_DEFAULT_S),
    batch: int = FIRE_BATCH,
) -> FireReport:
    """One pass of the scheduler loop: claim up to `batch` due schedules (SKIP LOCKED),
    enqueue their ticks' jobs and advance them, all in one transaction; again while a
    batch comes back full. Announces the new work after each commit. A schedule this
    host cannot plan is counted skipped and due again after UNPLANNABLE_RETRY."""
    report = FireReport()
    while True:
        woken: set[tuple[str, str]] = set()
        async with store.transaction() as uow:
            due = await uow.schedules.claim_due(now, batch)
            enqueued = skipped = 0
            for schedule in due:
                try:
                    chosen = plan(schedule, now, grace)
                except (KeyError, CronSimError, ValueError) as exc:
                    log.warning(
                        "schedule of source %s (tenant %s) cannot be planned on this host "
                        "(time zone %r, cron %r: %s); trying again in %d s",
                        schedule.source_id,
                        schedule.tenant_id,
                        schedule.time_zone,
                        schedule.cron,
                        type(exc).__name__,
                        UNPLANNABLE_RETRY.total_seconds(),
                    )
                    skipped += 1
                    await uow.schedules.advance(
                        schedule.source_id,
                        next_run_at=now + UNPLANNABLE_RETRY,
                        last_run_at=None,
                        now=now,
                    )
                    continue
                specs = _specs(schedule, chosen.ticks, limits)
                call = CallContext(
                    method="scheduler",
                    trace_id="",
                    actor="scheduler",
                    tenant_id=schedule.tenant_id,
                    project_id=schedule.project_id,
                )
                items = await enqueue_within(uow, call, specs, now) if specs else []
                created = [i.enqueued.job for i in items if i.enqueued and i.enqueued.created]
                enqueued += len(created)
                failed = any(item.error is not None for item in items) or len(specs) < len(
                    chosen.ticks
                )
                skipped += 1 if failed or (chosen.missed and schedule.misfire_policy == SKIP) else 0
                woken |= {(job.tenant_id, job.job_type) for job in created}
                await uow.schedules.advance(
                    schedule.source_id,
                    next_run_at=chosen.next_run_at,
                    last_run_at=chosen.ticks[-1] if created else None,
                    now=now,
                )
        for key in sorted(woken):
            store.notify_work(*key)
        report = FireReport(
            schedules=report.schedules + len(due),
            enqueued=report.enqueued + enqueued,
            skipped=report.skipped + skipped,
        )
        if len(due) < batch:
            return report


def _specs(schedule: ScheduleLike, chosen: Sequence[datetime], limits: JobLimits) -> list[JobSpec]:
    """The ticks' job specs. A template the server's limits refuse now (e.g. a payload
    over a JOB_PAYLOAD_MAX_BYTES lowered since registration) drops its ticks with a
    warning instead of failing the pass, which would hold back every schedule claimed
    with it."""
    try:
        return [validate_enqueue(tick_request(schedule, tick), limits) for tick in chosen]
    except InvalidArgument as error:
        log.warning("schedule of source %s skips its ticks: %s", schedule.source_id, error)
        return []


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)

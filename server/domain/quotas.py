"""Quotas per (tenant, jobType) (DESIGN §4.1-4.2, seed 003, issue 9 point 1): the
settings rules, the reads with live usage, the summary, and the operator mutations.

A quota's settings are `maxActive` (concurrency cap), `maxPerHour` (sliding hour,
counted per minute) and a token bucket of `burst` tokens refilled at
`refillPerSecond`; 0 turns a cap or the bucket off, `burst` is at least 1, and each
is at most the server's policy maximum (`QuotaPolicy`, from the QUOTA_*_MAX
settings). Usage (active slots, tokens, the minute counts) is changed by leases,
completions and expiries under the accounting model of `QuotaRow`
(server/storage/tables.py); here it is only read, and the token bucket is evaluated
at read time with `bucket_tokens`, the formula the lease applies too.

Every mutation (create, update, delete, pause, resume) runs in one unit of work
with its audit entry (`audit.record`, which also copies the token's
quota_reason/quota_ticket claims) and a `quota.*` event. Update and delete are
conditional on the AIP-154 etag: a stale etag is ABORTED, which the gateway
answers 412. The etag a read answers (`QuotaView.etag`, also the HTTP ETag) is
`v{version}-{usage digest}`: the row's `version` (`etag_of`), which only settings
and pause changes move, and a digest of the usage shown beside them, so the tag
changes whenever the representation does (RFC 9110 §8.8.1: a strong validator) and
a revalidating GET never gets 304 for usage that moved. The conditions compare the
version alone (`_check_etag`), so usage moving between a read and an update is no
conflict; a bare `v{version}` is accepted too. The row is locked while it is
compared and written, so a concurrent lease or change waits rather than
interleaving.
"""

from __future__ import annotations

import hashlib
import math
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from gateway.text import has_control
from server.domain import audit
from server.domain.context import CallContext
from server.domain.errors import Aborted, InvalidArgument, NotFound, Violation, shown
from server.domain.pagination import TEXT, ListingSpec, Page, PageTokens, SortKey
from server.domain.resources import QUOTA, QuotaLike, quota_snapshot
from server.domain.sources import validate_source_type

if TYPE_CHECKING:
    from server.domain.units import Store, UnitOfWork

PAUSE_REASON_MAX = 256
# The slowest refill a bucket may have, in tokens per second: one token per 11.6 days.
# Slower rates put the next token centuries away (1e-12: ~31,700 years), past what a
# timestamp can hold, so leasing failed for the job type (and for every type leased
# with it) until the quota changed.
REFILL_MIN = 1e-6
MINUTES_PER_HOUR = 60
_QUOTA_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


# --- values ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QuotaPolicy:
    """The most each setting may be (server configuration, DESIGN §4.2): counts per
    quota, `refill_per_second` in tokens per second."""

    max_active: int
    max_per_hour: int
    burst: int
    refill_per_second: float


@dataclass(frozen=True, slots=True)
class QuotaLimits:
    """The settings a create or update asks for, as given (validated by `validate`)."""

    max_active: int
    max_per_hour: int
    burst: int
    refill_per_second: float


class QuotaStateLike(QuotaLike, Protocol):
    """A quota as read with its accounting columns: a storage row or a `Quota`."""

    @property
    def tenant_id(self) -> str: ...
    @property
    def active(self) -> int: ...
    @property
    def tokens(self) -> float: ...
    @property
    def tokens_at(self) -> datetime: ...
    @property
    def version(self) -> int: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def updated_at(self) -> datetime: ...
    @property
    def updated_by(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Quota:
    """A quota as the domain writes it (the columns of `QuotaRow`)."""

    quota_id: str
    tenant_id: str
    job_type: str
    max_active: int
    max_per_hour: int
    burst: int
    refill_per_second: float
    paused: bool
    pause_reason: str | None
    active: int
    tokens: float
    tokens_at: datetime
    version: int
    created_at: datetime
    updated_at: datetime
    updated_by: str


@dataclass(frozen=True, slots=True)
class QuotaUsage:
    """Use of a quota's limits at one instant: slots held, tokens in the bucket
    (fractional), leases in the 60 whole minutes ending with the current one."""

    active: int
    tokens: float
    last_hour: int


@dataclass(frozen=True, slots=True)
class QuotaView:
    """A quota with its usage as of the read."""

    quota: QuotaStateLike
    usage: QuotaUsage

    @property
    def etag(self) -> str:
        """`v{version}-{digest}`: see the module docstring."""
        usage = self.usage
        shown = f"{usage.active}:{usage.tokens!r}:{usage.last_hour}".encode()
        return f"{etag_of(self.quota)}-{hashlib.sha256(shown).hexdigest()[:8]}"


@dataclass(frozen=True, slots=True)
class QuotaLine:
    """One line of the summary: a quota, its usage, the jobs of its type held back
    (status throttled) and whether it holds work back now."""

    view: QuotaView
    throttled_jobs: int
    backpressure: bool


@dataclass(frozen=True, slots=True)
class QuotaTotals:
    quotas: int
    paused: int
    backpressured: int
    active: int
    last_hour: int
    throttled_jobs: int


@dataclass(frozen=True, slots=True)
class QuotaSummary:
    lines: Sequence[QuotaLine]
    totals: QuotaTotals
    generated_at: datetime


@dataclass(frozen=True, slots=True)
class QuotaQuery:
    """A listing's narrowing; None means "any"."""

    tenant_id: str
    job_type: str | None = None
    paused: bool | None = None


class QuotaRead(QuotaStateLike, Protocol):
    """A quota row as a read returns it: with its last-hour count (see `QuotaUsage`)."""

    @property
    def last_hour(self) -> int: ...


class QuotaSummaryRead(QuotaRead, Protocol):
    """A summary's quota row: also the tenant's jobs of its type now throttled."""

    @property
    def throttled_jobs(self) -> int: ...


# --- storage, as the domain sees it -----------------------------------------------------


class QuotaRepository(Protocol):
    """Quotas inside a unit of work."""

    async def add(self, quota: Quota) -> None:
        """Insert `quota`; AlreadyExists (QUOTA_EXISTS, metadata jobType) when its
        tenant has a quota for the job type."""
        ...

    async def lock(self, tenant_id: str, quota_id: str) -> Quota:
        """The quota, its row locked until the unit of work ends (leases of its job
        type wait); NotFound (QUOTA_NOT_FOUND) when absent or another tenant's."""
        ...

    async def update(self, quota: Quota) -> None:
        """Store the settings, pause state, bucket and version of a quota `lock`ed in
        this unit of work (`active` is the lease's to change, never written here)."""
        ...

    async def delete(self, quota: Quota) -> None:
        """Delete a `lock`ed quota and its minute counts."""
        ...

    async def last_hour(self, quota_id: str, *, after_minute: int) -> int:
        """Leases counted for the quota in minutes after `after_minute` (epoch // 60)."""
        ...

    async def release_throttled(self, tenant_id: str, job_type: str, *, now: datetime) -> int:
        """Make every throttled job of the tenant's `job_type` eligible at `now` (they
        stay `throttled`: the next lease judges them by the quota as it then stands,
        or by none, and throttles again what it must); how many."""
        ...


class QuotaReads(Protocol):
    """Quotas outside a transaction: one statement each."""

    async def get(self, tenant_id: str, quota_id: str, *, after_minute: int) -> QuotaRead:
        """The quota with its last-hour count (minutes after `after_minute`);
        NotFound (QUOTA_NOT_FOUND) when absent or another tenant's."""
        ...

    async def page(
        self, query: QuotaQuery, after: tuple[Any, ...] | None, limit: int, *, after_minute: int
    ) -> Sequence[QuotaRead]:
        """Up to `limit + 1` quotas of `query` after the position `after` (job_type,
        quota_id) in `QUOTA_LISTING`'s order, each with its last-hour count."""
        ...

    async def summary(self, tenant_id: str, *, after_minute: int) -> Sequence[QuotaSummaryRead]:
        """Every quota of the tenant in (job_type, quota_id) order, each with its
        last-hour count and the tenant's throttled jobs of its type."""
        ...


# --- rules -------------------------------------------------------------------------------


def etag_of(quota: QuotaStateLike) -> str:
    """The settings part of a quota's AIP-154 etag: `v{version}`, which settings and
    pause changes move and usage never does; what conditions compare."""
    return f"v{quota.version}"


def _aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def bucket_tokens(quota: QuotaStateLike, now: datetime) -> float:
    """Tokens in the bucket at `now` (QuotaRow's model): min(burst, tokens +
    refillPerSecond x seconds since tokens_at); `burst` while the bucket is off
    (refillPerSecond 0). A clock behind `tokens_at` adds nothing."""
    if quota.refill_per_second <= 0:
        return float(quota.burst)
    elapsed = max(0.0, (_aware(now) - _aware(quota.tokens_at)).total_seconds())
    return min(float(quota.burst), quota.tokens + quota.refill_per_second * elapsed)


def minute_of(now: datetime) -> int:
    """The UTC minute `now` falls in, as quota_minutes keys it: epoch seconds // 60."""
    return math.floor(_aware(now).timestamp()) // 60


def last_hour_after(now: datetime) -> int:
    """The minute after which leases count towards lastHour: the 60 minutes ending
    with the current one are those > minute_of(now) - 60."""
    return minute_of(now) - MINUTES_PER_HOUR


def backpressure(quota: QuotaStateLike, usage: QuotaUsage, throttled_jobs: int) -> bool:
    """Whether the quota holds work back now: paused; a limit reached (active at
    maxActive, fewer than one token, lastHour at maxPerHour); or jobs throttled."""
    return (
        quota.paused
        or (quota.max_active > 0 and usage.active >= quota.max_active)
        or (quota.refill_per_second > 0 and usage.tokens < 1)
        or (quota.max_per_hour > 0 and usage.last_hour >= quota.max_per_hour)
        or throttled_jobs > 0
    )


def validate(limits: QuotaLimits, policy: QuotaPolicy) -> list[Violation]:
    """Every bad setting, named by its API field: negative, above the policy maximum,
    a burst below 1, a refill rate that is not a finite number."""
    violations: list[Violation] = []
    counts = (
        ("maxActive", limits.max_active, 0, policy.max_active),
        ("maxPerHour", limits.max_per_hour, 0, policy.max_per_hour),
        ("burst", limits.burst, 1, policy.burst),
    )
    for name, value, least, most in counts:
        if value < least:
            bound = "must not be negative" if least == 0 else f"must be at least {least}"
            violations.append(Violation(name, f"{bound}, got {value}"))
        elif value > most:
            violations.append(
                Violation(name, f"must be at most {most} (the policy maximum), got {value}")
            )
    rate = limits.refill_per_second
    if not math.isfinite(rate):
        violations.append(
            Violation(
                "refillPerSecond", f"must be a finite number of tokens per second, got {rate}"
            )
        )
    elif rate < 0:
        violations.append(Violation("refillPerSecond", f"must not be negative, got {rate:g}"))
    elif 0 < rate < REFILL_MIN:
        violations.append(
            Violation(
                "refillPerSecond",
                f"must be 0 (no bucket) or at least {REFILL_MIN:g} tokens per second"
                f" (one per 11.6 days), got {rate!r}",
            )
        )
    elif rate > policy.refill_per_second:
        violations.append(
            Violation(
                "refillPerSecond",
                f"must be at most {policy.refill_per_second:g} (the policy maximum), got {rate:g}",
            )
        )
    return violations


def _job_type_violation(job_type: str) -> Violation | None:
    if not job_type:
        return Violation("jobType", "is required")
    return validate_source_type(job_type, field="jobType")


def _check_id(quota_id: str) -> None:
    """No quota has an id outside the issued alphabet; saying so early also keeps bytes
    a database refuses (NUL for PostgreSQL) away from it."""
    if not _QUOTA_ID.match(quota_id):
        raise NotFound.of(QUOTA, quota_id)


def _check_etag(quota: Quota, etag: str) -> None:
    """AIP-154: a given etag whose settings part (`v{version}`, before the "-") is not
    the current one means the caller decided on settings that are gone; usage moving
    since the read is no conflict."""
    if etag and etag.partition("-")[0] != etag_of(quota):
        raise Aborted(
            f"quota {quota.quota_id!r} changed since etag {shown(etag)} was read (its"
            f" settings are now at {etag_of(quota)!r}); read it again and retry",
            reason="QUOTA_ETAG_MISMATCH",
            metadata={"quotaId": quota.quota_id, "etag": etag_of(quota)},
        )


def _settled(quota: Quota, limits: QuotaLimits, now: datetime) -> tuple[float, datetime]:
    """The bucket under new settings: what it holds now under the old ones, capped at
    the new burst; a bucket switched on (from refill 0) starts full."""
    if quota.refill_per_second <= 0:
        return float(limits.burst), now
    return min(float(limits.burst), bucket_tokens(quota, now)), now


def _view(quota: QuotaStateLike, last_hour: int, now: datetime) -> QuotaView:
    usage = QuotaUsage(active=quota.active, tokens=bucket_tokens(quota, now), last_hour=last_hour)
    return QuotaView(quota=quota, usage=usage)


async def _changed(
    uow: UnitOfWork, call: CallContext, before: Quota, after: Quota, event_type: str
) -> None:
    """Store a change with its audit entry and event; an unchanged quota is audited
    (the operator acted) but neither rewritten nor an event."""
    if after != before:
        await uow.quotas.update(after)
        await _event(uow, call, after, event_type)
    await audit.record(uow, call, QUOTA, before=before, after=after)


async def _event(uow: UnitOfWork, call: CallContext, quota: QuotaLike, event_type: str) -> None:
    """The `quota.*` event of a change, on subject `quotas/{id}`, with the audited view."""
    await uow.events.append(
        call.tenant_id,
        event_type,
        QUOTA.name(quota.quota_id),
        dict(quota_snapshot(quota)),
        call.trace_id,
    )


# --- operations --------------------------------------------------------------------------


async def create_quota(
    store: Store,
    call: CallContext,
    *,
    policy: QuotaPolicy,
    job_type: str,
    limits: QuotaLimits,
    now: datetime,
) -> QuotaView:
    """A new quota with a full bucket and no usage. Raises InvalidArgument (every bad
    field), AlreadyExists (QUOTA_EXISTS) when the tenant has one for the job type."""
    tenant_id = call.require_tenant()
    violations = validate(limits, policy)
    if (bad := _job_type_violation(job_type)) is not None:
        violations.insert(0, bad)
    if violations:
        raise InvalidArgument.from_violations(violations)
    quota = Quota(
        quota_id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        job_type=job_type,
        max_active=limits.max_active,
        max_per_hour=limits.max_per_hour,
        burst=limits.burst,
        refill_per_second=limits.refill_per_second,
        paused=False,
        pause_reason=None,
        active=0,
        tokens=float(limits.burst),
        tokens_at=now,
        version=1,
        created_at=now,
        updated_at=now,
        updated_by=call.actor,
    )
    async with store.transaction() as uow:
        await uow.quotas.add(quota)
        await audit.record(uow, call, QUOTA, before=None, after=quota)
        await _event(uow, call, quota, "quota.created")
    return _view(quota, 0, now)


async def update_quota(
    store: Store,
    call: CallContext,
    *,
    policy: QuotaPolicy,
    quota_id: str,
    job_type: str,
    limits: QuotaLimits,
    etag: str,
    now: datetime,
) -> QuotaView:
    """Replace the four limits (PUT, AIP-134 with AIP-154's etag). `job_type` may be
    empty; otherwise it must be the quota's. An unchanged quota is audited, not
    rewritten, and keeps its etag. Changed limits make the job type's throttled jobs
    eligible at once, and wake its workers: the next lease judges them by the new
    limits (raising a cap released nothing before; jobs waited out the delay the old
    bucket had set, days for a slow refill). Raises InvalidArgument, NotFound
    (QUOTA_NOT_FOUND), Aborted (QUOTA_ETAG_MISMATCH)."""
    tenant_id = call.require_tenant()
    _check_id(quota_id)
    violations = validate(limits, policy)
    if job_type and (bad := validate_source_type(job_type, field="jobType")) is not None:
        violations.insert(0, bad)
    if violations:
        raise InvalidArgument.from_violations(violations)
    async with store.transaction() as uow:
        before = await uow.quotas.lock(tenant_id, quota_id)
        _check_etag(before, etag)
        if job_type and job_type != before.job_type:
            raise InvalidArgument.of(
                "jobType",
                f"is immutable: quota {quota_id!r} governs {before.job_type!r},"
                f" got {shown(job_type)}",
            )
        after = before
        wanted = QuotaLimits(
            before.max_active, before.max_per_hour, before.burst, before.refill_per_second
        )
        if limits != wanted:
            tokens, tokens_at = _settled(before, limits, now)
            after = replace(
                before,
                max_active=limits.max_active,
                max_per_hour=limits.max_per_hour,
                burst=limits.burst,
                refill_per_second=limits.refill_per_second,
                tokens=tokens,
                tokens_at=tokens_at,
                version=before.version + 1,
                updated_at=now,
                updated_by=call.actor,
            )
        await _changed(uow, call, before, after, "quota.updated")
        # Jobs throttled under the old limits wait for no delay those limits set.
        released = 0
        if after is not before:
            released = await uow.quotas.release_throttled(tenant_id, before.job_type, now=now)
        last_hour = await uow.quotas.last_hour(quota_id, after_minute=last_hour_after(now))
    if released:
        store.notify_work(tenant_id, after.job_type)
    return _view(after, last_hour, now)


async def delete_quota(
    store: Store, call: CallContext, *, quota_id: str, etag: str, now: datetime
) -> QuotaLike:
    """Delete the quota (its job type is then unlimited: its throttled jobs are
    eligible at once; leased jobs keep their leases; workers waiting for the type are
    woken). Raises NotFound (QUOTA_NOT_FOUND), Aborted (QUOTA_ETAG_MISMATCH)."""
    tenant_id = call.require_tenant()
    _check_id(quota_id)
    async with store.transaction() as uow:
        before = await uow.quotas.lock(tenant_id, quota_id)
        _check_etag(before, etag)
        await uow.quotas.delete(before)
        await uow.quotas.release_throttled(tenant_id, before.job_type, now=now)
        await audit.record(uow, call, QUOTA, before=before, after=None)
        await _event(uow, call, before, "quota.deleted")
    store.notify_work(tenant_id, before.job_type)  # unlimited now, paused or not before
    return before


async def set_paused(
    store: Store,
    call: CallContext,
    *,
    quota_id: str,
    paused: bool,
    reason: str = "",
    etag: str = "",
    now: datetime,
) -> QuotaView:
    """Pause (with `reason`, else the call's operator reason, at most 256 characters
    either way) or resume, which wakes the workers waiting for the job type after the
    commit; conditional on `etag` when one is given (AIP-154, as an update). Pausing a
    paused quota updates its reason; resuming an active one changes nothing; both are
    audited. Raises InvalidArgument (reason), NotFound (QUOTA_NOT_FOUND), Aborted
    (QUOTA_ETAG_MISMATCH)."""
    tenant_id = call.require_tenant()
    _check_id(quota_id)
    pause_reason: str | None = None
    if paused:
        pause_reason = _pause_reason(reason, call)
    async with store.transaction() as uow:
        before = await uow.quotas.lock(tenant_id, quota_id)
        _check_etag(before, etag)
        after = before
        if (before.paused, before.pause_reason) != (paused, pause_reason):
            after = replace(
                before,
                paused=paused,
                pause_reason=pause_reason,
                version=before.version + 1,
                updated_at=now,
                updated_by=call.actor,
            )
        await _changed(uow, call, before, after, "quota.paused" if paused else "quota.resumed")
        last_hour = await uow.quotas.last_hour(quota_id, after_minute=last_hour_after(now))
    if before.paused and not paused:
        store.notify_work(tenant_id, after.job_type)  # leasing restarts at once
    return _view(after, last_hour, now)


def _pause_reason(reason: str, call: CallContext) -> str | None:
    """The reason given, or the operator reason header's (cut to the column's 256
    characters: the audit entry keeps it whole)."""
    if reason.strip():
        if len(reason) > PAUSE_REASON_MAX:
            raise InvalidArgument.of(
                "reason", f"must be at most {PAUSE_REASON_MAX} characters, got {len(reason)}"
            )
        if has_control(reason):  # PostgreSQL refuses a NUL in text: a 400, not a 500
            raise InvalidArgument.of("reason", "must not contain control characters")
        return reason
    header = (call.operator_reason or "").strip()
    return header[:PAUSE_REASON_MAX] or None


async def get_quota(store: Store, call: CallContext, *, quota_id: str, now: datetime) -> QuotaView:
    """Raises NotFound (QUOTA_NOT_FOUND)."""
    tenant_id = call.require_tenant()
    _check_id(quota_id)
    quota = await store.quotas.get(tenant_id, quota_id, after_minute=last_hour_after(now))
    return _view(quota, quota.last_hour, now)


QUOTA_LISTING: ListingSpec[QuotaRead, QuotaQuery] = ListingSpec(
    name="quotas",
    sort=(SortKey("jobType", "job_type", TEXT), SortKey("quotaId", "quota_id", TEXT)),
    filters={"jobType": "job_type", "paused": "paused"},
)


async def list_quotas(
    store: Store,
    tokens: PageTokens,
    call: CallContext,
    *,
    job_type: str,
    paused: bool | None,
    limit: int,
    continuation_token: str,
    now: datetime,
) -> Page[QuotaView]:
    """One page in (jobType, quotaId) order. Raises InvalidArgument for a malformed
    `jobType`, a bad `limit` or `continuationToken`."""
    tenant_id = call.require_tenant()
    if job_type and (bad := validate_source_type(job_type, field="jobType")) is not None:
        raise InvalidArgument.from_violations((bad,))
    query = QuotaQuery(tenant_id=tenant_id, job_type=job_type or None, paused=paused)
    after_minute = last_hour_after(now)

    async def read(q: QuotaQuery, after: tuple[Any, ...] | None, size: int) -> Sequence[QuotaRead]:
        return await store.quotas.page(q, after, size, after_minute=after_minute)

    page = await QUOTA_LISTING.page(tokens, query, limit=limit, token=continuation_token, read=read)
    return Page(
        items=[_view(quota, quota.last_hour, now) for quota in page.items],
        continuation_token=page.continuation_token,
    )


async def quota_summary(store: Store, call: CallContext, *, now: datetime) -> QuotaSummary:
    """Every quota of the tenant with its usage, throttled jobs and backpressure; and
    the totals. Raises nothing of its own."""
    tenant_id = call.require_tenant()
    lines: list[QuotaLine] = []
    for quota in await store.quotas.summary(tenant_id, after_minute=last_hour_after(now)):
        view = _view(quota, quota.last_hour, now)
        pressed = backpressure(quota, view.usage, quota.throttled_jobs)
        lines.append(
            QuotaLine(view=view, throttled_jobs=quota.throttled_jobs, backpressure=pressed)
        )
    totals = QuotaTotals(
        quotas=len(lines),
        paused=sum(1 for line in lines if line.view.quota.paused),
        backpressured=sum(1 for line in lines if line.backpressure),
        active=sum(line.view.usage.active for line in lines),
        last_hour=sum(line.view.usage.last_hour for line in lines),
        throttled_jobs=sum(line.throttled_jobs for line in lines),
    )
    return QuotaSummary(lines=lines, totals=totals, generated_at=now)

"""Leasing (DESIGN §9, issue 9 point 4): how workers take, keep and finish jobs.

A lease hands a waiting job to a worker until `lease_expires_at`; its fencing token
(job id, lease id, attempt) is valid only while it is the job's current lease, so a
heartbeat, completion or failure with a stale token changes nothing and fails that
item alone with FAILED_PRECONDITION (reason STALE_LEASE).

Quotas are applied at lease time, in the lease's transaction with the quota row
locked (storage, `repositories/leases.py`): a paused quota leases nothing of its
job type (its jobs wait as they are); otherwise the concurrency cap (`maxActive`
minus the slots held), the token bucket (whole tokens, refilled up to now) and the
last hour's count (`maxPerHour`) bound how many of the eligible jobs are leased;
the other candidates become `throttled` until `plan_quota` expects the quota to
allow them. Delayed, never refused.

Order: a lease serves one tenant (the call's) and takes the eligible jobs of the
asked job types by `priority DESC, next_eligible_at, job_id`: priority first, then
the longest eligible. Fairness between tenants comes from each worker call serving
its own tenant; within a tenant, a job type's quota is what keeps one type from
starving the others.

Retries: the n-th retry of a failed job waits min(maxDelay, initialDelay *
multiplier^(n-1)) * uniform(1 - jitter, 1) seconds (`backoff_delay`), the "full
jitter below the cap" scheme; a non-retryable failure or the last attempt
dead-letters the job with its error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Protocol

from gateway.text import has_control
from server.domain.context import CallContext
from server.domain.errors import DomainError, FailedPrecondition, InvalidArgument, Violation, shown
from server.domain.sources import validate_source_type

if TYPE_CHECKING:
    from server.domain.units import Store

log = logging.getLogger("orchestrator.leasing")

WORKER_ID_MAX = 200
JOB_TYPES_MAX = 100
MAX_JOBS_MAX = 1000
BATCH_MAX = 1000
WAIT_MAX_S = 60.0
LEASE_DEFAULT_S = 30.0
LEASE_MIN_S = 1.0
LEASE_MAX_S = 3600.0
CATEGORY_MAX = 64
CODE_MAX = 128
MESSAGE_MAX = 4096
RESULT_MAX_BYTES = 64 * 1024  # the payload size cap's default (Job.payload)
# A long poll re-queries at least this often (the fallback when a wake-up is lost,
# and how jobs whose nextEligibleAt arrives are found), never in a tight loop.
POLL_INTERVAL_S = 1.0
# A job held back by a full concurrency cap is retried after this long at the latest;
# a released slot makes the best throttled job eligible at once (storage).
BUSY_DELAY_S = 5.0
THROTTLE_MAX_S = 366 * 86400.0  # the furthest a throttled job's nextEligibleAt is put
# Expired leases handled per reaper statement batch.
REAP_BATCH = 500

STALE_LEASE = "STALE_LEASE"
JOB_CANCELED = "JOB_CANCELED"
LEASE_EXPIRED_CATEGORY = "lease"
LEASE_EXPIRED_CODE = "LEASE_EXPIRED"

_CATEGORY = re.compile(r"^[a-z][a-z0-9._-]{0,63}$")


@dataclass(frozen=True, slots=True)
class FencingToken:
    """One lease of one job: (job id, lease id, attempt)."""

    job_id: str
    lease_id: str
    attempt: int

    def as_data(self) -> dict[str, Any]:
        return {"jobId": self.job_id, "leaseId": self.lease_id, "attempt": self.attempt}


@dataclass(frozen=True, slots=True)
class LeaseRequest:
    """A validated LeaseJobs call. Durations in seconds."""

    tenant_id: str
    worker_id: str
    job_types: tuple[str, ...]
    max_jobs: int
    wait_s: float
    lease_s: float
    trace_id: str | None


@dataclass(frozen=True, slots=True)
class Leased:
    """What one lease query took: `jobs` (rows with the Job's attributes, status
    leased) and whether it `more`: eligible jobs of the asked types were left behind
    (a hint, true at the latest whenever `max_jobs` were taken), on which a long poll
    wakes the next waiter."""

    jobs: Sequence[Any]
    more: bool


@dataclass(frozen=True, slots=True)
class Completion:
    """A completed job: `result` is its compact JSON text (None for no result)."""

    token: FencingToken
    result: str | None


@dataclass(frozen=True, slots=True)
class Failure:
    """A failed attempt as the worker reported it (`message` already truncated)."""

    token: FencingToken
    category: str
    code: str
    message: str
    retryable: bool
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one heartbeat, completion or failure item: `error` None is OK.

    `status` is the job's status after the call (for OK items), `next_eligible_at`
    the retry time of a failed job, `expires_at` a heartbeat's new expiry and
    `canceled` whether the job was canceled meanwhile."""

    token: FencingToken
    error: DomainError | None = None
    status: str | None = None
    next_eligible_at: datetime | None = None
    expires_at: datetime | None = None
    canceled: bool = False


@dataclass(frozen=True, slots=True)
class QuotaState:
    """A quota's settings and accounting as locked at lease time. `oldest_minute` is
    the earliest UTC minute (epoch seconds // 60) counted in `last_hour`, or None."""

    quota_id: str
    job_type: str
    paused: bool
    max_active: int
    active: int
    max_per_hour: int
    last_hour: int
    oldest_minute: int | None
    burst: int
    refill_per_second: float
    tokens: float
    tokens_at: datetime


@dataclass(frozen=True, slots=True)
class QuotaPlan:
    """What a quota allows now: lease at most `cap` jobs; the rest wait until `until`.
    `tokens` is the bucket refilled up to now (before this lease takes any)."""

    cap: int
    until: datetime
    tokens: float


def plan_quota(quota: QuotaState, now: datetime, wanted: int) -> QuotaPlan:
    """How many of `wanted` jobs `quota` lets start at `now`, and when the ones it holds
    back should be tried again (the latest of the binding limits' expected times).

    Token bucket: the whole tokens of min(burst, tokens + refill * elapsed); a job
    short of a token waits until the bucket holds one more (1 - remainder) / refill.
    Last hour: maxPerHour minus the leases of the 60 minutes ending now; a job over it
    waits until the oldest counted minute leaves the window. Concurrency: maxActive
    minus the slots held; a job over it waits BUSY_DELAY_S at the latest (a released
    slot makes the next throttled job eligible at once).
    """
    cap = wanted
    untils: list[datetime] = []
    tokens = float(quota.burst)
    if quota.max_active > 0:
        free = max(0, quota.max_active - quota.active)
        if free < wanted:
            untils.append(now + timedelta(seconds=BUSY_DELAY_S))
        cap = min(cap, free)
    if quota.max_per_hour > 0:
        free = max(0, quota.max_per_hour - quota.last_hour)
        if free < wanted:
            oldest = quota.oldest_minute if quota.oldest_minute is not None else _minute(now)
            leaves = datetime.fromtimestamp((oldest + 60) * 60, tz=now.tzinfo)
            untils.append(max(leaves, now + timedelta(seconds=1)))
        cap = min(cap, free)
    if quota.refill_per_second > 0:
        elapsed = max(0.0, (now - quota.tokens_at).total_seconds())
        tokens = min(float(quota.burst), quota.tokens + quota.refill_per_second * elapsed)
        whole = max(0, math.floor(tokens))
        if whole < wanted:
            left = tokens - min(whole, cap)
            # At most THROTTLE_MAX_S ahead: a rate stored before REFILL_MIN existed (a
            # 1e-300 one puts the next token past any timestamp) throttles, never fails.
            wait = min(max(0.0, 1.0 - left) / quota.refill_per_second, THROTTLE_MAX_S)
            untils.append(now + timedelta(seconds=wait))
        cap = min(cap, whole)
    return QuotaPlan(cap=max(0, cap), until=max(untils, default=now), tokens=tokens)


def _minute(now: datetime) -> int:
    return int(now.timestamp()) // 60


def backoff_delay(
    retry: int,
    *,
    initial_s: float,
    max_s: float,
    multiplier: float,
    jitter: float,
    random: Callable[[], float],
) -> float:
    """Seconds before the `retry`-th retry (1-based): min(max, initial * multiplier^(n-1))
    scaled by a factor uniform in [1 - jitter, 1] (`random()` in [0, 1))."""
    exponent = max(0, retry - 1)
    try:
        delay = initial_s * multiplier**exponent
    except OverflowError:
        delay = max_s
    delay = min(max_s, delay)
    return delay * (1.0 - jitter * random())


def stale(token: FencingToken, status: str) -> FailedPrecondition:
    """FAILED_PRECONDITION for a token that is not the job's current lease."""
    return FailedPrecondition(
        f"lease {token.lease_id!r} of job {token.job_id!r} (attempt {token.attempt}) is not "
        f"the job's current lease; the job is {status}",
        reason=STALE_LEASE,
        metadata={"jobId": token.job_id, "leaseId": token.lease_id, "status": status},
    )


def canceled(token: FencingToken) -> FailedPrecondition:
    """The job of a still-current token was canceled: the worker should stop it."""
    return FailedPrecondition(
        f"job {token.job_id!r} was canceled", reason=JOB_CANCELED, metadata={"jobId": token.job_id}
    )


class LeaseStore(Protocol):
    """Leasing in storage: each call one short transaction that also writes its events
    and changes the quota accounting it uses (`repositories/leases.py`)."""

    async def lease(self, request: LeaseRequest, now: datetime) -> Leased:
        """Lease up to `request.max_jobs` eligible jobs and throttle the candidates
        their quota holds back."""
        ...

    async def heartbeat(
        self, tenant_id: str, tokens: Sequence[FencingToken], expires_at: datetime, now: datetime
    ) -> list[Outcome]: ...

    async def complete(
        self, tenant_id: str, completions: Sequence[Completion], now: datetime, trace_id: str | None
    ) -> list[Outcome]: ...

    async def fail(
        self,
        tenant_id: str,
        failures: Sequence[Failure],
        now: datetime,
        trace_id: str | None,
        random: Callable[[], float],
    ) -> list[Outcome]: ...

    async def expire(self, now: datetime, limit: int) -> int:
        """Return expired leases to the queue (or dead-letter them); how many."""
        ...

    def watch(self, tenant_id: str, job_types: Sequence[str]) -> Watch:
        """A wake-up subscription for new work of these job types (register before
        querying, so an enqueue in between is not missed)."""
        ...

    def now(self) -> datetime:
        """The engine's time (UTC)."""
        ...


class Watch(Protocol):
    async def wait(self, timeout: float) -> bool:
        """Until woken (True) or `timeout` seconds passed (False)."""
        ...

    @property
    def woken(self) -> bool:
        """Whether a wake-up chose this waiter."""
        ...

    def pass_on(self, *, across_replicas: bool = False) -> None:
        """Wake one other waiter of the same job types: a wake-up reaches one waiter
        per job announced, and a lease that left work behind hands it on (to a waiter
        of this process: the other replicas heard of the work when it was announced);
        `across_replicas`: a wake-up this waiter will not act on goes to another
        replica when no waiter here is idle."""
        ...

    def close(self) -> None: ...


# --- validation -----------------------------------------------------------------------


def _worker_violation(worker_id: str) -> Violation | None:
    if not worker_id.strip():
        return Violation("workerId", "is required")
    if len(worker_id) > WORKER_ID_MAX:
        return Violation(
            "workerId", f"must be at most {WORKER_ID_MAX} characters, got {len(worker_id)}"
        )
    if has_control(worker_id):
        return Violation("workerId", f"must not contain control characters, got {shown(worker_id)}")
    return None


def _duration_violation(
    name: str, seconds: float | None, *, low: float, high: float
) -> Violation | None:
    if seconds is None:
        return None
    if not (low <= seconds <= high):
        return Violation(name, f"must be from {_fmt(low)} to {_fmt(high)}, got {_fmt(seconds)}")
    return None


def _fmt(seconds: float) -> str:
    return f"{seconds:g}s"


def validate_lease(
    call: CallContext,
    *,
    worker_id: str,
    job_types: Sequence[str],
    max_jobs: int,
    wait_s: float | None,
    lease_s: float | None,
) -> LeaseRequest:
    """A LeaseJobs call as a LeaseRequest. Raises InvalidArgument naming every bad field
    (worker_service.proto LeaseJobs): blank or long workerId, no job types or more than
    100, maxJobs outside 1..1000, waitTimeout outside 0..60 s, leaseDuration outside
    1 s..1 h, a job type that is not the slug EnqueueJob accepts (`jobTypes[i]`; job
    types are the slugs source types are, job.proto `jobType`)."""
    violations: list[Violation] = []
    if (bad := _worker_violation(worker_id)) is not None:
        violations.append(bad)
    if not job_types:
        violations.append(Violation("jobTypes", "is required: at least one job type"))
    elif len(job_types) > JOB_TYPES_MAX:
        violations.append(
            Violation(
                "jobTypes", f"must have at most {JOB_TYPES_MAX} job types, got {len(job_types)}"
            )
        )
    for index, job_type in enumerate(job_types[:JOB_TYPES_MAX]):
        if (bad := validate_source_type(job_type, field=f"jobTypes[{index}]")) is not None:
            violations.append(bad)
    if not 1 <= max_jobs <= MAX_JOBS_MAX:
        violations.append(Violation("maxJobs", f"must be from 1 to {MAX_JOBS_MAX}, got {max_jobs}"))
    if (bad := _duration_violation("waitTimeout", wait_s, low=0.0, high=WAIT_MAX_S)) is not None:
        violations.append(bad)
    if (
        bad := _duration_violation("leaseDuration", lease_s, low=LEASE_MIN_S, high=LEASE_MAX_S)
    ) is not None:
        violations.append(bad)
    if violations:
        raise InvalidArgument.from_violations(violations)
    return LeaseRequest(
        tenant_id=call.require_tenant(),
        worker_id=worker_id,
        job_types=tuple(dict.fromkeys(job_types)),
        max_jobs=max_jobs,
        wait_s=wait_s or 0.0,
        lease_s=LEASE_DEFAULT_S if lease_s is None else lease_s,
        trace_id=call.trace_id or None,
    )


def validate_batch(worker_id: str, count: int, field_name: str) -> None:
    """Raises InvalidArgument for a blank worker id or more than 1,000 items."""
    violations: list[Violation] = []
    if (bad := _worker_violation(worker_id)) is not None:
        violations.append(bad)
    if count > BATCH_MAX:
        violations.append(
            Violation(field_name, f"must have at most {BATCH_MAX} items, got {count}")
        )
    if violations:
        raise InvalidArgument.from_violations(violations)


def validate_heartbeat_duration(lease_s: float | None) -> float:
    bad = _duration_violation("leaseDuration", lease_s, low=LEASE_MIN_S, high=LEASE_MAX_S)
    if bad is not None:
        raise InvalidArgument.from_violations((bad,))
    return LEASE_DEFAULT_S if lease_s is None else lease_s


def token_violation(field_name: str, job_id: str, lease_id: str) -> InvalidArgument | None:
    """The per-item error of a token without a job id or lease id (`completions[i].token`),
    or with a control character in either (no lease has one; PostgreSQL refuses a NUL in
    text): a malformed request, not a stale lease (worker_service.proto FencingToken)."""
    if not (job_id and lease_id):
        return InvalidArgument.of(
            field_name,
            "token is required: a jobId and leaseId from LeaseJobs",
            reason="TOKEN_REQUIRED",
        )
    if has_control(job_id) or has_control(lease_id):
        return InvalidArgument.of(
            field_name,
            "token must be the jobId and leaseId LeaseJobs answered: got a control character",
        )
    return None


# C0 controls but HT, LF and CR, and DEL: a failure message keeps its line breaks.
_MESSAGE_CONTROL: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def failure_message(text: str) -> str:
    """A worker's failure message as stored: its first MESSAGE_MAX characters, each
    control character but a line break or tab replaced by U+FFFD (the Unicode
    replacement character). An exception's text may hold a NUL, which PostgreSQL
    refuses in text; refusing the failure would leave the job leased until its lease
    expired, for a message."""
    return _MESSAGE_CONTROL.sub("\ufffd", text[:MESSAGE_MAX])


def failure_violation(index: int, category: str, code: str) -> InvalidArgument | None:
    """The per-item error of a malformed category or code (`failures[i].category`)."""
    violations: list[Violation] = []
    if not _CATEGORY.fullmatch(category):
        violations.append(
            Violation(
                f"failures[{index}].category",
                f"must be a lowercase slug of at most {CATEGORY_MAX} characters,"
                f" got {shown(category)}",
            )
        )
    if not code.strip() or len(code) > CODE_MAX or has_control(code):
        violations.append(
            Violation(
                f"failures[{index}].code",
                f"must be 1 to {CODE_MAX} printable characters, got {shown(code)}",
            )
        )
    return InvalidArgument.from_violations(violations) if violations else None


# --- operations -----------------------------------------------------------------------


async def lease_jobs(store: Store, request: LeaseRequest) -> Sequence[Any]:
    """Lease now, or long-poll until work arrives or `request.wait_s` passes.

    The wake-up subscription is taken before each query, so work enqueued between
    the query and the wait wakes it; without a wake-up it re-queries every
    POLL_INTERVAL_S (delayed jobs becoming eligible, a lost notification). A wake-up
    chooses one waiter per job announced (storage/wakeups.py), so a call never drops
    one: a query that leased jobs and left eligible ones behind (`Leased.more`), and
    a call that was woken but returns (or fails, or is cancelled) without querying
    again, pass the wake-up on to the next waiter."""
    leases = store.leases
    if not request.job_types:
        if request.wait_s > 0:
            await asyncio.sleep(request.wait_s)
        return ()
    deadline = time.monotonic() + request.wait_s
    while True:
        watch = leases.watch(request.tenant_id, request.job_types)
        requery = False  # the next query answers any wake-up this watch got
        more = False
        try:
            leased = await leases.lease(request, leases.now())
            more = bool(leased.jobs) and leased.more  # only after progress: no ping-pong
            remaining = deadline - time.monotonic()
            if leased.jobs or remaining <= 0:
                return leased.jobs
            await watch.wait(min(remaining, POLL_INTERVAL_S))
            requery = True
        finally:
            watch.close()
            dropped = watch.woken and not requery  # a wake-up nobody here acted on
            if more or dropped:
                watch.pass_on(across_replicas=dropped)  # not this waiter: another one


class Reaper:
    """Finds expired leases every `interval_s` seconds and returns their jobs to the
    queue (the attempt counts) or dead-letters them when attempts are exhausted; a
    job is found within `interval_s` of its expiry plus one pass."""

    def __init__(self, leases: LeaseStore, interval_s: float) -> None:
        self._leases = leases
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="lease-reaper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run_once(self) -> int:
        total = 0
        while True:
            count = await self._leases.expire(self._leases.now(), REAP_BATCH)
            total += count
            if count < REAP_BATCH:
                return total

    async def _run(self) -> None:
        while True:
            try:
                count = await self.run_once()
                if count:
                    log.info("returned %d expired leases", count)
            except asyncio.CancelledError:
                raise
            except Exception:  # a database hiccup must not stop the reaper
                log.exception("lease reaper pass failed; retrying")
            await asyncio.sleep(self._interval_s)

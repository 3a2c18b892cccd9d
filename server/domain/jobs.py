"""Jobs (DESIGN §4.1, §9; issue 9 point 2): enqueueing, idempotency, reading,
canceling, replaying and the per-status summary of a tenant's jobs.

Times (`now`) come from the caller: the process clock the services read, which tests
move, and which leasing compares `nextEligibleAt` with. Every change runs in one unit
of work with its event (`domain/events.py`, subject
`jobs/{jobId}`) and its operator audit entry, so a job never changes without both
and a failed call leaves nothing behind. Status changes go through
`job_states.transition`.

Enqueue. A job names a registered source of the caller's tenant (and project, when
X-Stella-Project narrows the view): an unknown or foreign source is NOT_FOUND, a
paused or disabled one FAILED_PRECONDITION (SOURCE_PAUSED / SOURCE_DISABLED). A
new job starts `queued`, eligible from `runAt` (the enqueue time when absent), or
`throttled` when its job type's quota allows no job now (`_throttle`): delayed until
the quota is expected to allow one, never refused.

Idempotency. `idempotencyKey` is unique per tenant (a partial unique index). The
request hash is the SHA-256 of the canonical enqueue request (effective values:
defaults applied, payload as canonical JSON), so a repeat with the same body
answers the existing job with `created` false and enqueues nothing, and a repeat
with another body is ALREADY_EXISTS (JOB_EXISTS, metadata `idempotencyKey`). The
repeat is answered before the source is checked, so a retry after the source was
paused still gets its job. Two concurrent enqueues of one key cannot both insert:
the INSERT is `ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS
NOT NULL DO NOTHING`, and the loser reads the winner's row. A key becomes free
again when its job is pruned.

Batch enqueue. 1 to `BATCH_MAX` jobs, each well-formed as EnqueueJob would have it;
otherwise the call is INVALID_ARGUMENT naming `jobs`, or every bad field of every
bad job (`jobs[i].jobType`, as pack runs name them), and enqueues nothing: a
malformed request is refused whole, as River's InsertMany validates every job
before inserting any, and as AIP-233 expects of batch methods. A well-formed batch's
jobs then succeed or fail on their own (the proto's contract) on what the database
says: an unknown, disabled or paused source or a conflicting key fails only its own
result, the others are inserted by one INSERT statement, their events by one more,
and the call writes one audit entry naming every job it created (resource `jobs/-`,
AIP-159's "any job"). A key repeated inside one batch answers the first
occurrence's job (or 409 for another body), as two calls would.

Pruning. Finished jobs (`succeeded`, `canceled`, `dead_lettered`) whose
`finished_at` is older than the retention (7 days by default) are deleted in
bounded batches with their events (`storage/pruning.py`); the operator audit trail
keeps who enqueued, canceled or replayed them.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Protocol

from gateway.text import has_control
from server.domain import audit, tracing
from server.domain.context import CallContext
from server.domain.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Violation,
    shown,
)
from server.domain.events import EventLike, NewEvent
from server.domain.job_states import (
    EVENT_TYPES,
    FINISHED,
    REPLAYED_EVENT,
    JobAction,
    JobStatus,
    transition,
)
from server.domain.leasing import QuotaState, plan_quota
from server.domain.pagination import TEXT, TIME, ListingSpec, Page, PageTokens, SortKey
from server.domain.resources import JOB, JobLike, ResourceType
from server.domain.sources import SOURCE, validate_source_type

if TYPE_CHECKING:
    from server.domain.units import Store, UnitOfWork

# --- limits (job.proto's field comments) --------------------------------------------

PRIORITY_MIN, PRIORITY_MAX = -1000, 1000
MAX_ATTEMPTS_DEFAULT, MAX_ATTEMPTS_MIN, MAX_ATTEMPTS_MAX = 3, 1, 100
BACKOFF_INITIAL_DEFAULT_S = 1.0
BACKOFF_MAX_DEFAULT_S = 300.0
BACKOFF_MAX_LIMIT_S = 86_400.0
BACKOFF_MULTIPLIER_DEFAULT, BACKOFF_MULTIPLIER_MIN, BACKOFF_MULTIPLIER_MAX = 2.0, 1.0, 10.0
BACKOFF_JITTER_DEFAULT = 0.2
IDEMPOTENCY_KEY_MAX = 200
BATCH_MAX = 1000
# The job's field in EnqueueJobRequest: violations name "job.<field>" (a batch's items
# answer exactly what EnqueueJob would).
REQUEST_FIELD = "job"
PAYLOAD_MAX_BYTES_DEFAULT = 64 * 1024
STATUSES = tuple(status.value for status in JobStatus)  # in JobStatus's order
THROTTLED = JobStatus.THROTTLED.value
# Issued ids (uuid4 text) and the ids callers give (pack runs): the id alphabet.
ID_PATTERN = "^[A-Za-z0-9._:-]{1,64}$"
_ID = re.compile(ID_PATTERN.removeprefix("^").removesuffix("$"))


class JobRecord(JobLike, Protocol):
    """A job as read, with everything the API shows (a storage row or a `Job`)."""

    @property
    def tenant_id(self) -> str: ...
    @property
    def request_hash(self) -> str | None: ...
    @property
    def payload(self) -> str | None: ...
    @property
    def result(self) -> str | None: ...
    @property
    def backoff_initial_s(self) -> float: ...
    @property
    def backoff_max_s(self) -> float: ...
    @property
    def backoff_multiplier(self) -> float: ...
    @property
    def backoff_jitter(self) -> float: ...
    @property
    def run_at(self) -> datetime: ...
    @property
    def next_eligible_at(self) -> datetime | None: ...
    @property
    def lease_expires_at(self) -> datetime | None: ...
    @property
    def last_error(self) -> str | None: ...
    @property
    def event_time(self) -> datetime | None: ...
    @property
    def trace_id(self) -> str | None: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def updated_at(self) -> datetime: ...


@dataclass(frozen=True, slots=True)
class Job:
    """A job as the domain writes it: the columns of `jobs` (storage/tables.py JobRow).
    JSON values (`payload`, `result`, `last_error`) are compact JSON text."""

    job_id: str
    tenant_id: str
    project_id: str | None
    job_type: str
    source_id: str
    status: str
    priority: int
    payload: str | None
    result: str | None
    attempts: int
    max_attempts: int
    backoff_initial_s: float
    backoff_max_s: float
    backoff_multiplier: float
    backoff_jitter: float
    run_at: datetime
    next_eligible_at: datetime | None
    lease_id: str | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    quota_id: str | None
    last_error: str | None
    idempotency_key: str | None
    request_hash: str | None
    replay_of: str | None
    pack_run_id: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    owner: str | None = None  # another engine's waiting item (domain/job_endings.py)
    event_time: datetime | None = None  # the tick or slice the work is about (issue 10)
    trace_parent: str | None = None  # the enqueue span's W3C traceparent (domain/tracing.py)
    # The trace id of the call (or process run) that enqueued it: the trace id of the
    # events of the transitions workers and the lease reaper cause (leases.py).
    trace_id: str | None = None


# --- requests -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BackoffRequest:
    """Backoff as asked, in seconds; None means "absent" (the default applies)."""

    initial_delay_s: float | None = None
    max_delay_s: float | None = None
    multiplier: float = 0.0  # 0: the default
    jitter: float | None = None


@dataclass(frozen=True, slots=True)
class EnqueueRequest:
    """One job to enqueue, as the caller sent it (the service reads the proto).

    `payload` is a JSON-ready Python value when `has_payload`; `run_at` an aware UTC
    datetime or None (now)."""

    job_type: str
    source_id: str
    priority: int = 0
    has_payload: bool = False
    payload: Any = None
    max_attempts: int = 0
    run_at: datetime | None = None
    idempotency_key: str | None = None
    pack_run_id: str | None = None
    backoff: BackoffRequest | None = None
    event_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class JobLimits:
    """The server's configured caps (server/config.py)."""

    payload_max_bytes: int = PAYLOAD_MAX_BYTES_DEFAULT


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A validated enqueue request with its defaults applied and its request hash."""

    job_type: str
    source_id: str
    priority: int
    payload: str | None
    max_attempts: int
    backoff_initial_s: float
    backoff_max_s: float
    backoff_multiplier: float
    backoff_jitter: float
    run_at: datetime | None
    idempotency_key: str | None
    pack_run_id: str | None
    request_hash: str | None  # with an idempotency key only: what a repeat is compared by
    event_time: datetime | None = None
    owner: str | None = None  # the engine's waiting item the job is for (job_endings.py)


@dataclass(frozen=True, slots=True)
class Enqueued:
    """The outcome of one enqueue: the job, and whether this call created it."""

    job: JobRecord
    created: bool


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One result of a batch enqueue, in request order: `error` or `enqueued`."""

    enqueued: Enqueued | None = None
    error: DomainError | None = None


@dataclass(frozen=True, slots=True)
class SourceState:
    enabled: bool
    paused: bool


@dataclass(frozen=True, slots=True)
class JobQuery:
    """A listing's narrowing; None means "any"."""

    tenant_id: str
    project_id: str | None = None
    status: str | None = None
    job_type: str | None = None
    source_id: str | None = None


@dataclass(frozen=True, slots=True)
class StatusCount:
    """One group of the summary: jobs of `job_type` in `status`, and when the last of
    them changed."""

    job_type: str
    status: str
    count: int
    last_updated_at: datetime


@dataclass(frozen=True, slots=True)
class TypeSummary:
    job_type: str
    counts: Mapping[str, int]  # every JobStatus value, and "total"
    last_updated_at: datetime


@dataclass(frozen=True, slots=True)
class JobSummary:
    totals: Mapping[str, int]
    job_types: Sequence[TypeSummary]
    last_updated_at: datetime | None


@dataclass(frozen=True, slots=True)
class JobWithHistory:
    job: JobRecord
    history: Sequence[EventLike]


# --- storage Protocols ----------------------------------------------------------------


class JobRepository(Protocol):
    """Jobs inside a unit of work."""

    async def source_states(
        self, tenant_id: str, source_ids: Sequence[str], *, project_id: str | None
    ) -> Mapping[str, SourceState]:
        """The enabled/paused state of each of `source_ids` that exists in the tenant
        (and project, when given); absent ids are missing from the answer."""
        ...

    async def by_keys(self, tenant_id: str, keys: Sequence[str]) -> Sequence[JobRecord]:
        """The tenant's jobs holding any of the idempotency `keys`."""
        ...

    async def quota_states(
        self, tenant_id: str, job_types: Sequence[str], *, now: datetime
    ) -> Mapping[str, QuotaState]:
        """The quotas of `job_types` in the tenant with their accounting as of `now`
        (read without a lock), by job type; types without a quota are absent."""
        ...

    async def insert(self, jobs: Sequence[Job]) -> set[str]:
        """Insert `jobs` with one statement, skipping any whose idempotency key the
        tenant already holds (ON CONFLICT DO NOTHING); the ids inserted."""
        ...

    async def get(
        self, tenant_id: str, job_id: str, *, project_id: str | None, lock: bool = False
    ) -> Job:
        """The job to change (locked FOR UPDATE on PostgreSQL with `lock`); NotFound
        (JOB_NOT_FOUND) when absent, another tenant's or outside the project."""
        ...

    async def owning_instances(self, tenant_id: str, owners: Sequence[str]) -> Mapping[str, str]:
        """The process instance of each of `owners` (jobs' `owner` columns: a token's
        or a saga step's "{engine}/{id}"), by owner, where the process engine still
        records it (a saga's steps, a live token; primary-key reads); others absent."""
        ...

    async def dead_letter_entry_of(self, tenant_id: str, job_id: str) -> str | None:
        """The id of the dead-letter entry of `job_id`'s chain, or None: the entry names
        the chain's latest job dead-lettered, so from an older one the replays are
        followed (each job's `job.replayed` event names its replay) until a job an
        entry names; one or two index reads per hop."""
        ...

    async def runs_of_steps(self, tenant_id: str, jobs: Sequence[Job]) -> Mapping[str, StepRun]:
        """The pack run each of `jobs` is a step of, by job id: the run its `packRunId`
        names holds a step whose job it is (primary-key reads). Jobs that are no run's
        step (a packRunId a caller chose, a replay's clone) are absent."""
        ...

    async def cancel(self, job: Job, *, now: datetime) -> tuple[Job, Sequence[tuple[str, str]]]:
        """Move `job` (read with `get(lock=True)`) to canceled: finished now, no
        eligibility or lease expiry, its quota slot (if it holds one) released in
        this transaction. The job after the change, and the (tenant, job type) keys
        whose throttled jobs the freed slot made leasable (to announce after commit).
        Aborted (JOB_CHANGED) when the job moved since it was read."""
        ...


class JobReads(Protocol):
    """Jobs outside a transaction: one round trip each."""

    async def get(self, tenant_id: str, job_id: str, *, project_id: str | None) -> JobRecord:
        """As `JobRepository.get`, for reading."""
        ...

    async def page(
        self, query: JobQuery, after: tuple[Any, ...] | None, limit: int
    ) -> Sequence[JobRecord]:
        """Up to `limit + 1` jobs of `query` after the position `after` (created_at,
        job_id) in `JOB_LISTING`'s order, newest first."""
        ...

    async def summary(self, tenant_id: str, *, project_id: str | None) -> Sequence[StatusCount]:
        """One GROUP BY (job_type, status) over the tenant's jobs."""
        ...


# --- listing --------------------------------------------------------------------------

JOB_LISTING: ListingSpec[JobRecord, JobQuery] = ListingSpec(
    name="jobs",
    sort=(SortKey("-createdAt", "created_at", TIME), SortKey("-jobId", "job_id", TEXT)),
    filters={
        "project": "project_id",
        "status": "status",
        "jobType": "job_type",
        "sourceId": "source_id",
    },
)

JobPage = Page[JobRecord]


@dataclass(frozen=True, slots=True)
class JobBatch:
    """What one batch enqueue did: the audited view of `BatchEnqueueJobs`."""

    created: tuple[str, ...]
    existing: tuple[str, ...]
    failed: int


# The resource of a batch's one audit entry: "jobs/-" (AIP-159: any job).
JOB_BATCH: ResourceType[JobBatch] = ResourceType(
    singular="job",
    collection="jobs",
    id_field="jobId",
    id_of=lambda batch: "-",
    snapshot=lambda batch: {
        "createdJobIds": list(batch.created),
        "existingJobIds": list(batch.existing),
        "failed": batch.failed,
    },
)


# --- validation -----------------------------------------------------------------------


# Levels of arrays and objects free JSON (a payload, a result, failure details) may
# nest: the gateway's MAX_FREE_DEPTH (gateway/json_parser.py), for gRPC callers too.
# Over gRPC a 49-level payload was taken, and the LeaseJobs answer carrying it (more
# message levels around it) was more than protobuf decoders take (100): the worker
# got INTERNAL "Exception deserializing response" while the job stood leased to it.
FREE_JSON_DEPTH_MAX: Final = 30
FREE_JSON_TOO_DEEP: Final = (
    f"nested too deeply: at most {FREE_JSON_DEPTH_MAX} levels of arrays and objects"
)


def json_depth(value: Any) -> int:
    """Levels of arrays and objects in `value` (0 for a scalar); iterative, since the
    point is a value too deep to recurse into safely."""
    deepest, pending = 0, [(value, 0)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level + 1)
        pending.extend((child, level + 1) for child in children)
    return deepest


def canonical_json(value: Any) -> str:
    """Compact JSON with sorted keys: how payloads are stored and hashed. Raises
    ValueError for NaN or an infinity, which JSON cannot carry."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def validate_job_type(value: str, *, field: str = "jobType") -> Violation | None:
    """Job types are the slugs source types are (job.proto `jobType`)."""
    if not value:
        return Violation(field, "is required")
    return validate_source_type(value, field=field)


def validate_enqueue(request: EnqueueRequest, limits: JobLimits) -> JobSpec:
    """The spec of `request`, or InvalidArgument naming every bad field by its path in
    `EnqueueJobRequest` with JSON names ("job.payload"), as the gateway names the
    fields it parses itself ("job.runAt"), AIP-193."""
    violations: list[Violation] = []
    if (bad := validate_job_type(request.job_type)) is not None:
        violations.append(bad)
    if not request.source_id:
        violations.append(Violation("sourceId", "is required"))
    if not PRIORITY_MIN <= request.priority <= PRIORITY_MAX:
        violations.append(
            Violation(
                "priority",
                f"must be between {PRIORITY_MIN} and {PRIORITY_MAX}, got {request.priority}",
            )
        )
    payload: str | None = None
    if request.has_payload:
        try:
            payload = canonical_json(request.payload)
        except ValueError:
            violations.append(Violation("payload", "must be JSON: NaN and infinities are not"))
        else:
            if json_depth(request.payload) > FREE_JSON_DEPTH_MAX:
                violations.append(Violation("payload", FREE_JSON_TOO_DEEP))
            size = len(payload.encode("utf-8", "surrogatepass"))
            if size > limits.payload_max_bytes:
                violations.append(
                    Violation(
                        "payload",
                        f"must be at most {limits.payload_max_bytes} bytes as JSON, got {size}",
                    )
                )
    max_attempts = request.max_attempts or MAX_ATTEMPTS_DEFAULT
    if not MAX_ATTEMPTS_MIN <= max_attempts <= MAX_ATTEMPTS_MAX:
        violations.append(
            Violation(
                "maxAttempts",
                f"must be between {MAX_ATTEMPTS_MIN} and {MAX_ATTEMPTS_MAX}, got {max_attempts}",
            )
        )
    backoff = request.backoff or BackoffRequest()
    initial, maximum, multiplier, jitter = _backoff(backoff, violations)
    key = request.idempotency_key
    if key is not None:
        if not key.strip():
            violations.append(Violation("idempotencyKey", "must not be blank"))
        elif len(key) > IDEMPOTENCY_KEY_MAX:
            violations.append(
                Violation("idempotencyKey", f"must be at most {IDEMPOTENCY_KEY_MAX} characters")
            )
        elif has_control(key):
            violations.append(Violation("idempotencyKey", "must not contain control characters"))
    if request.pack_run_id is not None and not _ID.fullmatch(request.pack_run_id):
        violations.append(
            Violation("packRunId", "must be 1 to 64 letters, digits, '.', '_', ':' or '-'")
        )
    if violations:
        raise InvalidArgument.from_violations(
            [Violation(f"{REQUEST_FIELD}.{v.field}", v.description) for v in violations]
        )
    spec = JobSpec(
        job_type=request.job_type,
        source_id=request.source_id,
        priority=request.priority,
        payload=payload,
        max_attempts=max_attempts,
        backoff_initial_s=initial,
        backoff_max_s=maximum,
        backoff_multiplier=multiplier,
        backoff_jitter=jitter,
        run_at=request.run_at,
        idempotency_key=key,
        pack_run_id=request.pack_run_id,
        request_hash=None,
        event_time=request.event_time,
    )
    if key is None:  # nothing to compare a repeat with: spare the hash (a batch's CPU)
        return spec
    return replace(spec, request_hash=request_hash(spec))


def _backoff(
    backoff: BackoffRequest, violations: list[Violation]
) -> tuple[float, float, float, float]:
    initial = (
        BACKOFF_INITIAL_DEFAULT_S if backoff.initial_delay_s is None else backoff.initial_delay_s
    )
    maximum = BACKOFF_MAX_DEFAULT_S if backoff.max_delay_s is None else backoff.max_delay_s
    multiplier = backoff.multiplier or BACKOFF_MULTIPLIER_DEFAULT
    jitter = BACKOFF_JITTER_DEFAULT if backoff.jitter is None else backoff.jitter
    if not 0 < maximum <= BACKOFF_MAX_LIMIT_S:
        violations.append(
            Violation("backoff.maxDelay", "must be more than 0s and at most 86400s (24 h)")
        )
    if not 0 <= initial <= maximum:
        violations.append(
            Violation("backoff.initialDelay", f"must be from 0s to maxDelay ({_seconds(maximum)})")
        )
    if not (
        math.isfinite(multiplier) and BACKOFF_MULTIPLIER_MIN <= multiplier <= BACKOFF_MULTIPLIER_MAX
    ):
        violations.append(
            Violation(
                "backoff.multiplier",
                f"must be from {BACKOFF_MULTIPLIER_MIN} to {BACKOFF_MULTIPLIER_MAX}"
                f", got {multiplier}",
            )
        )
    if not (math.isfinite(jitter) and 0.0 <= jitter <= 1.0):
        violations.append(Violation("backoff.jitter", f"must be from 0.0 to 1.0, got {jitter}"))
    return initial, maximum, multiplier, jitter


def _seconds(value: float) -> str:
    return f"{value:g}s"


def request_hash(spec: JobSpec) -> str:
    """Hex SHA-256 of the canonical request: what "the same body" means for a
    repeated idempotency key. Effective values, so an explicit default equals an
    absent field; `runAt` as given (absent stays absent, not "now")."""
    canonical = {
        "jobType": spec.job_type,
        "sourceId": spec.source_id,
        "priority": spec.priority,
        "payload": spec.payload,
        "maxAttempts": spec.max_attempts,
        "backoff": [
            spec.backoff_initial_s,
            spec.backoff_max_s,
            spec.backoff_multiplier,
            spec.backoff_jitter,
        ],
        "runAt": spec.run_at.isoformat() if spec.run_at is not None else None,
        "idempotencyKey": spec.idempotency_key,
        "packRunId": spec.pack_run_id,
    }
    if spec.event_time is not None:  # absent from the hashes of jobs without one
        canonical["eventTime"] = spec.event_time.isoformat()
    return hashlib.sha256(canonical_json(canonical).encode()).hexdigest()


def _check_job_id(job_id: str) -> None:
    """No job has an id outside the issued alphabet; refusing it early also keeps bytes
    a database refuses (NUL for PostgreSQL) away from it."""
    if not _ID.fullmatch(job_id):
        raise NotFound.of(JOB, job_id)


# --- writing --------------------------------------------------------------------------


def _new_job(
    spec: JobSpec,
    tenant_id: str,
    project_id: str | None,
    now: datetime,
    trace_parent: str | None = None,
    trace_id: str | None = None,
) -> Job:
    run_at = spec.run_at or now
    return Job(
        job_id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        project_id=project_id,
        job_type=spec.job_type,
        source_id=spec.source_id,
        status=JobStatus.QUEUED.value,
        priority=spec.priority,
        payload=spec.payload,
        result=None,
        attempts=0,
        max_attempts=spec.max_attempts,
        backoff_initial_s=spec.backoff_initial_s,
        backoff_max_s=spec.backoff_max_s,
        backoff_multiplier=spec.backoff_multiplier,
        backoff_jitter=spec.backoff_jitter,
        run_at=run_at,
        next_eligible_at=run_at,
        lease_id=None,
        lease_owner=None,
        lease_expires_at=None,
        quota_id=None,
        last_error=None,
        idempotency_key=spec.idempotency_key,
        request_hash=spec.request_hash,
        replay_of=None,
        pack_run_id=spec.pack_run_id,
        created_at=now,
        updated_at=now,
        finished_at=None,
        event_time=spec.event_time,
        trace_parent=trace_parent,
        trace_id=trace_id,
        owner=spec.owner,
    )


def _enqueued_event(job: Job, call: CallContext) -> NewEvent:
    data: dict[str, Any] = {"to": job.status}
    if job.replay_of is not None:
        data["replayOf"] = job.replay_of
    return NewEvent(
        tenant_id=job.tenant_id,
        type=EVENT_TYPES[JobAction.ENQUEUE],
        subject=JOB.name(job.job_id),
        data=data,
        trace_id=call.trace_id,
        time=job.created_at,
    )


def _source_error(source_id: str, state: SourceState | None) -> DomainError | None:
    if state is None:
        return NotFound.of(SOURCE, source_id)
    if not state.enabled:
        return FailedPrecondition(
            f"source {source_id!r} is disabled; it cannot enqueue jobs",
            reason="SOURCE_DISABLED",
            metadata={"sourceId": source_id},
        )
    if state.paused:
        return FailedPrecondition(
            f"source {source_id!r} is paused; resume it to enqueue jobs",
            reason="SOURCE_PAUSED",
            metadata={"sourceId": source_id},
        )
    return None


def _key_conflict(key: str) -> AlreadyExists:
    error = AlreadyExists.of(JOB, "idempotencyKey", key)
    error.message += " with another request body"
    return error


async def _enqueue(
    uow: UnitOfWork,
    call: CallContext,
    specs: Sequence[JobSpec | DomainError],
    now: datetime,
    *,
    sources: Mapping[str, SourceState] | None = None,
    events_out: list[NewEvent] | None = None,
) -> list[BatchItem]:
    """`_enqueue_jobs` in a `job.enqueue` span, whose traceparent the new jobs store
    (domain/tracing.py): their later transitions are its children."""
    with tracing.job_span("enqueue") as span:
        items = await _enqueue_jobs(
            uow,
            call,
            specs,
            now,
            tracing.current_traceparent(),
            sources=sources,
            events_out=events_out,
        )
        _describe(span, items)
        return items


def _describe(span: Any, items: Sequence[BatchItem]) -> None:
    """The `job.enqueue` span's attributes: how many jobs it created, and the one's."""
    if span is not None:
        created = [i.enqueued.job for i in items if i.enqueued and i.enqueued.created]
        span.set_attribute("job.count", len(created))
        if len(created) == 1:
            span.set_attribute("job.id", created[0].job_id)
            span.set_attribute("job.type", created[0].job_type)


async def _enqueue_plain(
    store: Store, call: CallContext, spec: JobSpec, now: datetime, trace_parent: str | None
) -> BatchItem | None:
    """One job, its event and its audit entry in one statement, when the store has the
    shortcut (PostgreSQL) and the job is plainly admissible (`Store.insert_plain_job`:
    source enabled and unpaused, no quota for its type, key free); None when nothing
    was written, and the transactional path must decide (an error, a repeat, a
    throttle). The same rows as that path writes for a new queued job."""
    if not _ID.fullmatch(spec.source_id):
        return None
    job = _new_job(
        spec, call.require_tenant(), call.project_id, now, trace_parent, call.trace_id or None
    )
    entry = audit.new_entry(call, JOB, before=None, after=job)
    if not await store.insert_plain_job(job, _enqueued_event(job, call), entry):
        return None
    return BatchItem(enqueued=Enqueued(job=job, created=True))


async def _enqueue_jobs(
    uow: UnitOfWork,
    call: CallContext,
    specs: Sequence[JobSpec | DomainError],
    now: datetime,
    trace_parent: str | None,
    *,
    sources: Mapping[str, SourceState] | None = None,
    events_out: list[NewEvent] | None = None,
) -> list[BatchItem]:
    """Enqueue every spec (errors pass through as their results) in `uow`: existing
    keys answered first, sources checked once each, then one INSERT and one events
    INSERT for the new jobs. A key's later occurrences in the batch are answered as
    its first occurrence was (its job when the bodies match, else 409). `sources`:
    states the caller read in this unit of work already (not read again);
    `events_out`: where the new jobs' events go instead of their own INSERT, for a
    caller that writes them with its own (one statement fewer)."""
    tenant_id = call.require_tenant()
    results: list[BatchItem | None] = [
        BatchItem(error=spec) if isinstance(spec, DomainError) else None for spec in specs
    ]
    valid = [(i, spec) for i, spec in enumerate(specs) if isinstance(spec, JobSpec)]
    specs_by_index = dict(valid)

    keys = sorted({spec.idempotency_key for _, spec in valid if spec.idempotency_key is not None})
    holders: dict[str, JobRecord] = {}
    if keys:
        holders = {
            job.idempotency_key or "": job for job in await uow.jobs.by_keys(tenant_id, keys)
        }
    # An id outside the issued alphabet names no source (SOURCE_NOT_FOUND below), and
    # it is not sent to the database: PostgreSQL refuses a NUL in text.
    known = sources or {}
    source_ids = sorted(
        {
            spec.source_id
            for _, spec in valid
            if spec.source_id not in known and _ID.fullmatch(spec.source_id)
        }
    )
    states = {
        **(await uow.jobs.source_states(tenant_id, source_ids, project_id=call.project_id)),
        **known,
    }

    fresh: dict[int, Job] = {}
    first_of_key: dict[str, int] = {}
    for i, spec in valid:
        key = spec.idempotency_key
        if key is not None and key in holders:
            results[i] = _repeat(holders[key], spec)
            continue
        if key is not None and key in first_of_key:
            continue  # answered after the insert, from the first occurrence's outcome
        error = _source_error(spec.source_id, states.get(spec.source_id))
        if error is not None:
            results[i] = BatchItem(error=error)
            continue
        fresh[i] = _new_job(
            spec, tenant_id, call.project_id, now, trace_parent, call.trace_id or None
        )
        if key is not None:
            first_of_key[key] = i

    fresh = await _throttle(uow, tenant_id, fresh, now)
    inserted = await uow.jobs.insert(list(fresh.values())) if fresh else set()
    lost = [i for i, job in fresh.items() if job.job_id not in inserted]
    if lost:  # a concurrent call inserted these keys first: answer its jobs
        lost_keys = sorted({fresh[i].idempotency_key or "" for i in lost})
        winners = {job.idempotency_key: job for job in await uow.jobs.by_keys(tenant_id, lost_keys)}
        for i in lost:
            key = fresh[i].idempotency_key
            assert key is not None  # a job without a key never conflicts
            results[i] = _repeat(winners[key], specs_by_index[i])
    created = [job for i, job in fresh.items() if job.job_id in inserted]
    for i, job in fresh.items():
        if job.job_id in inserted:
            results[i] = BatchItem(enqueued=Enqueued(job=job, created=True))
    for i, spec in valid:  # later occurrences of a key inside this batch
        if results[i] is None:
            assert spec.idempotency_key is not None
            first = results[first_of_key[spec.idempotency_key]]
            assert first is not None
            if first.enqueued is None:
                results[i] = first
            else:
                results[i] = _repeat(first.enqueued.job, spec)
    events = [_enqueued_event(job, call) for job in created]
    events += [_throttled_event(job, call) for job in created if job.status == THROTTLED]
    if events_out is not None:
        events_out += events
    else:
        await uow.events.append_many(events)
    return [result for result in results if result is not None]


async def _throttle(
    uow: UnitOfWork, tenant_id: str, fresh: dict[int, Job], now: datetime
) -> dict[int, Job]:
    """`fresh` with the jobs whose quota is exhausted now starting `throttled`, eligible
    when `leasing.plan_quota` expects the quota to allow one (delayed, never refused).
    A quota read without a lock, so an approximation the lease corrects either way: a
    queued job over quota is throttled at lease time, a throttled one leased when
    eligible. A paused quota holds its jobs back by pausing leasing, not by throttling
    them; jobs with a later runAt are not judged now."""
    due = {job.job_type for job in fresh.values() if job.run_at <= now}
    if not due:
        return fresh
    quotas = await uow.jobs.quota_states(tenant_id, sorted(due), now=now)
    until: dict[str, datetime] = {}
    for job_type, quota in quotas.items():
        plan = plan_quota(quota, now, 1)
        if plan.cap == 0 and not quota.paused:
            until[job_type] = plan.until
    if not until:
        return fresh
    return {
        i: replace(job, status=THROTTLED, next_eligible_at=until[job.job_type])
        if job.job_type in until and job.run_at <= now
        else job
        for i, job in fresh.items()
    }


def _throttled_event(job: Job, call: CallContext) -> NewEvent:
    eligible = job.next_eligible_at or job.created_at
    return NewEvent(
        tenant_id=job.tenant_id,
        type=EVENT_TYPES[JobAction.THROTTLE],
        subject=JOB.name(job.job_id),
        data={"to": THROTTLED, "nextEligibleAt": eligible.isoformat().replace("+00:00", "Z")},
        trace_id=call.trace_id,
        time=job.created_at,
    )


def _announce(store: Store, items: Sequence[BatchItem], now: datetime) -> None:
    """After the commit: wake one worker per job leasable now, per (tenant, job type)
    (a later runAt is found by the workers' poll fallback, a throttled job by the
    release of a slot or that fallback)."""
    keys = Counter(
        (item.enqueued.job.tenant_id, item.enqueued.job.job_type)
        for item in items
        if item.enqueued is not None
        and item.enqueued.created
        and item.enqueued.job.run_at <= now
        and item.enqueued.job.status != THROTTLED  # leasable when its quota allows
    )
    for (tenant_id, job_type), count in sorted(keys.items()):
        store.notify_work(tenant_id, job_type, count)


def _repeat(existing: JobRecord, spec: JobSpec) -> BatchItem:
    if existing.request_hash != spec.request_hash:
        return BatchItem(error=_key_conflict(spec.idempotency_key or ""))
    return BatchItem(enqueued=Enqueued(job=existing, created=False))


async def enqueue_within(
    uow: UnitOfWork,
    call: CallContext,
    specs: Sequence[JobSpec],
    now: datetime,
    *,
    sources: Mapping[str, SourceState] | None = None,
    events_out: list[NewEvent] | None = None,
) -> list[BatchItem]:
    """Enqueue validated `specs` in `uow` as a batch does, in order, each on its own (an
    existing idempotency key answers its job), with their events, but without an audit
    entry or a wake-up: for the engines that enqueue inside their own unit of work
    (schedules, backfills: issue 10), which audit and announce themselves. `sources`
    and `events_out` as `_enqueue_jobs` takes them: the engine knows its source's
    state and writes the jobs' events with its own."""
    return await _enqueue(uow, call, specs, now, sources=sources, events_out=events_out)


async def enqueue_job(
    store: Store, call: CallContext, request: EnqueueRequest, limits: JobLimits, *, now: datetime
) -> Enqueued:
    """Enqueue one job, or answer the existing job of its idempotency key.

    Raises InvalidArgument (every bad field), NotFound (SOURCE_NOT_FOUND),
    FailedPrecondition (SOURCE_PAUSED, SOURCE_DISABLED), AlreadyExists (JOB_EXISTS:
    the key was used with another body).
    """
    spec = validate_enqueue(request, limits)
    with tracing.job_span("enqueue") as span:
        trace_parent = tracing.current_traceparent()
        item = await _enqueue_plain(store, call, spec, now, trace_parent)
        if item is None:
            async with store.transaction() as uow:
                [item] = await _enqueue_jobs(uow, call, [spec], now, trace_parent)
                if item.enqueued is not None:
                    job = item.enqueued.job
                    before = None if item.enqueued.created else job
                    await audit.record(uow, call, JOB, before=before, after=job)
        _describe(span, [item])
    if item.error is not None:  # nothing was written
        raise item.error
    assert item.enqueued is not None
    _announce(store, [item], now)
    return item.enqueued


async def batch_enqueue_jobs(
    store: Store,
    call: CallContext,
    requests: Sequence[EnqueueRequest | DomainError],
    limits: JobLimits,
    *,
    now: datetime,
) -> list[BatchItem]:
    """Enqueue up to `BATCH_MAX` jobs, each on its own (see the module docstring); the
    results in request order. A request given as a DomainError is one the service
    could not read. Raises InvalidArgument naming `jobs` for none or more than
    `BATCH_MAX`, or every bad field of every malformed job (`jobs[i].<field>`, EnqueueJob's
    `job.<field>` renamed); nothing is written then."""
    if not 1 <= len(requests) <= BATCH_MAX:
        raise InvalidArgument.of("jobs", f"must hold 1 to {BATCH_MAX} jobs, got {len(requests)}")
    specs: list[JobSpec | DomainError] = []
    violations: list[Violation] = []
    for i, request in enumerate(requests):
        error: DomainError
        if isinstance(request, DomainError):
            error = request
        else:
            try:
                specs.append(validate_enqueue(request, limits))
                continue
            except InvalidArgument as invalid:
                error = invalid
        if isinstance(error, InvalidArgument) and error.violations:
            violations.extend(
                Violation(f"jobs[{i}].{v.field.split('.', 1)[-1]}", v.description)
                for v in error.violations
            )
        else:
            violations.append(Violation(f"jobs[{i}]", error.message))
    if violations:
        raise InvalidArgument.from_violations(violations)
    async with store.transaction() as uow:
        results = await _enqueue(uow, call, specs, now)
        batch = JobBatch(
            created=tuple(
                r.enqueued.job.job_id for r in results if r.enqueued and r.enqueued.created
            ),
            existing=tuple(
                r.enqueued.job.job_id for r in results if r.enqueued and not r.enqueued.created
            ),
            failed=sum(1 for r in results if r.error is not None),
        )
        await audit.record(uow, call, JOB_BATCH, before=None, after=batch)
    _announce(store, results, now)
    return results


async def cancel_job(store: Store, call: CallContext, *, job_id: str, now: datetime) -> Job:
    """Cancel a job that has not finished (job_states: waiting or leased → canceled; a
    leased job's quota slot is released in the same transaction). Canceling a
    canceled job changes nothing and answers it.

    Raises NotFound (JOB_NOT_FOUND), FailedPrecondition (JOB_STATUS_CONFLICT: it
    succeeded or was dead-lettered).
    """
    tenant_id = call.require_tenant()
    _check_job_id(job_id)
    woken: Sequence[tuple[str, str]] = ()
    async with store.transaction() as uow:
        before = await uow.jobs.get(tenant_id, job_id, project_id=call.project_id, lock=True)
        after = before
        if before.status != JobStatus.CANCELED:
            transition(before.status, JobAction.CANCEL)
            after, woken = await uow.jobs.cancel(before, now=now)
            await uow.events.append(
                tenant_id,
                EVENT_TYPES[JobAction.CANCEL],
                JOB.name(job_id),
                {"from": before.status, "to": after.status, "attempt": before.attempts},
                call.trace_id,
            )
        await audit.record(uow, call, JOB, before=before, after=after)
    for key in woken:
        store.notify_work(*key)
    return after


async def replay_job(store: Store, call: CallContext, *, job_id: str, now: datetime) -> Job:
    """Enqueue a clone of a finished job (same type, source, priority, payload,
    maxAttempts, backoff and pack run; no idempotency key; attempts 0) whose
    replayOf names it; the original gets a job.replayed event.

    Raises NotFound (JOB_NOT_FOUND, SOURCE_NOT_FOUND when its source is gone),
    FailedPrecondition (JOB_STATUS_CONFLICT: not finished; SOURCE_PAUSED,
    SOURCE_DISABLED; JOB_OWNED_BY_PROCESS: a process instance's job, see
    `owned_refusal`; JOB_IN_PACK_RUN: a job of a pack run that did not succeed is
    re-run by retrying its run, see `pack_run_refusal` (a succeeded one may be
    replayed: no retry runs it again); JOB_DEAD_LETTERED: a dead-lettered job is
    replayed through its dead-letter entry, `deadletter.replay_entry`, which needs
    orch:backfill and marks the entry replayed; a clone made here would leave the
    entry pending, to be replayed a second time).
    """
    tenant_id = call.require_tenant()
    _check_job_id(job_id)
    async with store.transaction() as uow:
        original = await uow.jobs.get(tenant_id, job_id, project_id=call.project_id)
        if JobStatus(original.status) not in FINISHED:
            raise FailedPrecondition(
                f"job is {original.status}; only a finished job can be replayed",
                reason="JOB_STATUS_CONFLICT",
                metadata={"status": original.status, "action": "replay"},
            )
        if original.owner is not None:
            instances = await uow.jobs.owning_instances(tenant_id, [original.owner])
            raise owned_refusal(original, instances.get(original.owner))
        if original.pack_run_id is not None and original.status != JobStatus.SUCCEEDED.value:
            runs = await uow.jobs.runs_of_steps(tenant_id, [original])
            if original.job_id in runs:
                raise pack_run_refusal(original, runs[original.job_id])
        if original.status == JobStatus.DEAD_LETTERED.value:
            entry_id = await uow.jobs.dead_letter_entry_of(tenant_id, original.job_id)
            metadata = {"status": original.status, "action": "replay"}
            which = "its dead-letter entry"
            if entry_id is not None:
                metadata["entryId"] = entry_id
                which = f"its dead-letter entry {entry_id!r}"
            raise FailedPrecondition(
                f"job is dead_lettered; replay {which} instead (scope orch:backfill), which"
                " records the replay so one failure is never replayed twice",
                reason="JOB_DEAD_LETTERED",
                metadata=metadata,
            )
        states = await uow.jobs.source_states(
            tenant_id, [original.source_id], project_id=call.project_id
        )
        error = _source_error(original.source_id, states.get(original.source_id))
        if error is not None:
            raise error
        clone = replay_clone(original, now=now, trace_id=call.trace_id or None)
        await uow.jobs.insert([clone])
        await uow.events.append_many(replay_events(original.job_id, clone, call))
        await audit.record(uow, call, JOB, before=None, after=clone)
    store.notify_work(tenant_id, clone.job_type)
    return clone


def replay_clone(original: Job, *, now: datetime, trace_id: str | None = None) -> Job:
    """The replay of a finished job (ReplayJob, dead-letter replays): a new queued job
    with the original's type, source, project, priority, payload, maxAttempts,
    backoff and pack run, attempts re-armed to 0, no idempotency key, eligible now,
    whose replayOf names the original; in the trace of the replaying call
    (`trace_id`: its trace id)."""
    return replace(
        original,
        job_id=str(uuid.uuid4()),
        status=JobStatus.QUEUED.value,
        result=None,
        attempts=0,
        run_at=now,
        next_eligible_at=now,
        lease_id=None,
        lease_owner=None,
        lease_expires_at=None,
        quota_id=None,
        last_error=None,
        idempotency_key=None,
        request_hash=None,
        replay_of=original.job_id,
        trace_parent=tracing.current_traceparent(),  # the replaying call's trace
        trace_id=trace_id,
        created_at=now,
        updated_at=now,
        finished_at=None,
    )


def replay_events(original_id: str, clone: Job, call: CallContext) -> list[NewEvent]:
    """The events of a replay: job.replayed on the original (naming the clone) and
    job.enqueued on the clone."""
    replayed = NewEvent(
        tenant_id=clone.tenant_id,
        type=REPLAYED_EVENT,
        subject=JOB.name(original_id),
        data={"replayJobId": clone.job_id},
        trace_id=call.trace_id,
        time=clone.created_at,
    )
    return [replayed, _enqueued_event(clone, call)]


OWNED_BY_PROCESS = "JOB_OWNED_BY_PROCESS"


def owned_refusal(job: Job, instance_id: str | None) -> FailedPrecondition:
    """Why a job another engine owns (`owner` set: a process instance's service-task
    step or saga compensation, domain/job_endings.py) is not replayed, by ReplayJob
    or the dead-letter queue: the instance already moved on from its ending (failed,
    or compensated as a saga), and a clone would run outside it, unseen by it (a
    shipment after the refund). FailedPrecondition JOB_OWNED_BY_PROCESS naming the
    instance (`instance_id`, None when the engine no longer records which) and the
    job; metadata {"jobId", "owner", "instanceId" (when known)}."""
    metadata = {"jobId": job.job_id, "owner": job.owner or ""}
    if instance_id is not None:
        metadata["instanceId"] = instance_id
        whose = f"process instance {instance_id!r}"
    else:
        whose = f"a process instance ({job.owner})"
    return FailedPrecondition(
        f"job {job.job_id!r} is a step of {whose}; it is not replayed outside its"
        " instance (the instance has moved on from its ending): start a new instance",
        reason=OWNED_BY_PROCESS,
        metadata=metadata,
    )


@dataclass(frozen=True, slots=True)
class StepRun:
    """The pack run a job is a step of (`JobRepository.runs_of_steps`): its id, its
    status, the run that retried it, if any, and the newest run of that chain of
    retries (the retry of the retry ...) with its status (this run's own when it
    was not retried)."""

    pack_run_id: str
    status: str
    retried_by: str | None = None
    newest: str = ""
    newest_status: str = ""


IN_PACK_RUN = "JOB_IN_PACK_RUN"


def pack_run_refusal(job: Job, run: StepRun) -> FailedPrecondition:
    """Why a job that did not succeed as a step of a pack run is not replayed, by
    ReplayJob or the dead-letter queue: its run re-runs it (`retry_pack_run` re-runs
    every job of a failed or canceled run that did not succeed, and takes over the
    job's dead-letter entry). A replay outside the run would run it a second time
    after a retry, and its success would leave the run failed and the jobs after it
    skipped. FailedPrecondition JOB_IN_PACK_RUN naming the run to retry (the newest of
    the chain of retries); metadata {"jobId", "packRunId", "retriedBy" (when the run
    was retried), "newestRetry" (when that run was retried in turn)}."""
    metadata = {"jobId": job.job_id, "packRunId": run.pack_run_id}
    head = f"job {job.job_id!r} is a job of pack run {run.pack_run_id!r}"
    if run.retried_by is not None:
        metadata["retriedBy"] = run.retried_by
        newest = "that run"
        if run.newest != run.retried_by:
            metadata["newestRetry"] = run.newest
            newest = f"its newest retry, {run.newest!r},"
        head += f", retried by pack run {run.retried_by!r}"
        if run.newest_status == "running":
            tail = f"; {newest} is running it"
        elif run.newest_status == "succeeded":
            tail = f"; {newest} succeeded: nothing is left to re-run"
        else:
            tail = f"; {newest} {run.newest_status}: retry it to run the job again"
    elif run.status == "running":
        tail = ", which is still running; once it has ended, retry the run to run the job again"
    else:
        tail = "; retry the run to run it again (a retry re-runs every job that did not succeed)"
    return FailedPrecondition(head + tail, reason=IN_PACK_RUN, metadata=metadata)


def source_error(source_id: str, state: SourceState | None) -> DomainError | None:
    """Why a job of `source_id` (in `state`, None when it is not the caller's) cannot
    be enqueued now: NotFound (SOURCE_NOT_FOUND) or FailedPrecondition
    (SOURCE_DISABLED, SOURCE_PAUSED); None when it can."""
    return _source_error(source_id, state)


# --- reading --------------------------------------------------------------------------


async def get_job(store: Store, call: CallContext, *, job_id: str) -> JobWithHistory:
    """The job and its history (its subject's events, oldest first).
    Raises NotFound (JOB_NOT_FOUND)."""
    tenant_id = call.require_tenant()
    _check_job_id(job_id)
    job = await store.jobs.get(tenant_id, job_id, project_id=call.project_id)
    history = await store.events.history(tenant_id, JOB.name(job_id))
    return JobWithHistory(job=job, history=history)


async def list_jobs(
    store: Store,
    tokens: PageTokens,
    call: CallContext,
    *,
    status: str,
    job_type: str,
    source_id: str,
    limit: int,
    continuation_token: str,
) -> JobPage:
    """One page of the tenant's jobs, newest first (createdAt desc, jobId desc).
    Raises InvalidArgument for a bad `status`, `jobType`, `sourceId`, `limit` or
    `continuationToken`."""
    tenant_id = call.require_tenant()
    violations: list[Violation] = []
    if status and status not in STATUSES:
        names = ", ".join(s.value for s in JobStatus)
        violations.append(Violation("status", f"must be one of {names}, got {shown(status)}"))
    if job_type and (bad := validate_job_type(job_type)) is not None:
        violations.append(bad)
    if source_id and not _ID.fullmatch(source_id):
        violations.append(
            Violation("sourceId", "must be 1 to 64 letters, digits, '.', '_', ':' or '-'")
        )
    if violations:
        raise InvalidArgument.from_violations(violations)
    query = JobQuery(
        tenant_id=tenant_id,
        project_id=call.project_id,
        status=status or None,
        job_type=job_type or None,
        source_id=source_id or None,
    )
    return await JOB_LISTING.page(
        tokens, query, limit=limit, token=continuation_token, read=store.jobs.page
    )


async def job_summary(store: Store, call: CallContext) -> JobSummary:
    """Counts per status, over all job types and per job type (ordered by jobType),
    with when a job last changed; retained jobs only."""
    tenant_id = call.require_tenant()
    groups = await store.jobs.summary(tenant_id, project_id=call.project_id)
    empty = {status.value: 0 for status in JobStatus} | {"total": 0}
    totals = dict(empty)
    per_type: dict[str, dict[str, int]] = {}
    last_of_type: dict[str, datetime] = {}
    for group in groups:
        counts = per_type.setdefault(group.job_type, dict(empty))
        for bucket in (counts, totals):
            bucket[group.status] = bucket.get(group.status, 0) + group.count
            bucket["total"] += group.count
        updated = _aware(group.last_updated_at)
        if group.job_type not in last_of_type or updated > last_of_type[group.job_type]:
            last_of_type[group.job_type] = updated
    types = [
        TypeSummary(job_type=name, counts=per_type[name], last_updated_at=last_of_type[name])
        for name in sorted(per_type)
    ]
    return JobSummary(
        totals=totals,
        job_types=types,
        last_updated_at=max(last_of_type.values()) if last_of_type else None,
    )


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)

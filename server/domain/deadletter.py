"""The dead-letter queue (DESIGN §4.1, issue 10 points 1-3): entries, stats, replays.

Entries. A job that reaches `dead_lettered` gets an entry in the same transaction
(storage, `repositories/deadletter.py` `record_dead_letters`, called by the lease
writers): its error's category, code, message, retryable flag and fingerprint
(`domain/fingerprint.py`), the job's attempts, `pending`. One entry follows a
chain of replays: replaying it clones its job (`jobs.replay_clone`: attempts
re-armed, replayOf naming the job) and marks it `replayed` with the clone as its
`replayJobId`; the clone succeeding makes it `resolved`, the clone being
dead-lettered makes it `pending` again naming the clone (`lastFailedAt` moves,
`firstFailedAt` stays, `replayCount` counts the replays).

Stats and summary come from per-cluster counters (tenant, project, fingerprint)
changed by deltas in the transaction of every entry change, plus the oldest pending
entry read from a partial index: a handful of rows per call whatever the number of
entries (issue 10 point 8: p50 ≤ 50 ms at 1,000,000 entries).

Replays. Only a `pending` entry is replayed: storage claims it with a conditional
update (`status = 'pending'` in the WHERE, rows locked in entry_id order on
PostgreSQL), so two concurrent replays of one entry enqueue one job and the loser
reports it `skipped`. A replay fails, changing nothing for that entry, when its job
was pruned (JOB_PRUNED) or its source is gone, paused or disabled. An entry whose
job a process instance owns (a service-task step or saga compensation,
`jobs.owned_refusal`) is never replayed: the instance has moved on from that ending
(a saga compensated it), so a batch or sweep reports it `skipped`
(JOB_OWNED_BY_PROCESS, naming the instance) and leaves it pending, and a single
replay is refused with FAILED_PRECONDITION. So is an entry whose job is a step of a
pack run (JOB_IN_PACK_RUN, `jobs.pack_run_refusal`): the run's retry re-runs it and
takes the entry over, marking it replayed by the retry's job, so the chain goes on
(resolved when that job succeeds, pending again naming it when it is dead-lettered).
Each call (one,
a batch of up to `BATCH_MAX`, or a bounded sweep of pending entries) is one unit of
work: claims, clones, their events and one audit entry listing every entry id with
its outcome.

Orders: listing newest first (lastFailedAt desc, entryId desc); replay-pending
oldest first (lastFailedAt asc, entryId asc), resumed by a signed token after the
last entry examined; summary (category asc, errorCode asc), byte-wise.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from gateway.text import has_control
from server.domain import audit, jobs
from server.domain.context import CallContext
from server.domain.errors import FailedPrecondition, InvalidArgument, NotFound, Violation, shown
from server.domain.fingerprint import PATTERN as FINGERPRINT_PATTERN
from server.domain.jobs import Job, SourceState
from server.domain.leasing import CATEGORY_MAX, CODE_MAX
from server.domain.pagination import (
    TEXT,
    TIME,
    ListingSpec,
    Page,
    PageTokens,
    SortKey,
    micros,
)
from server.domain.resources import ResourceType

if TYPE_CHECKING:
    from server.domain.units import UnitOfWork

BATCH_MAX = 500
PENDING_LIMIT_DEFAULT = 500
PENDING_LIMIT_MAX = 1000  # the default of the server's DEADLETTER_REPLAY_PENDING_MAX
TOP_CLUSTERS = 10
_ID = re.compile(jobs.ID_PATTERN)
_CATEGORY = re.compile(r"^[a-z][a-z0-9._-]{0,63}$")


class EntryStatus(StrEnum):
    PENDING = "pending"
    REPLAYED = "replayed"
    RESOLVED = "resolved"


STATUSES = tuple(status.value for status in EntryStatus)


class Outcome(StrEnum):
    """What a replay did with one entry (DeadLetterReplayResult.outcome)."""

    REPLAYED = "replayed"
    SKIPPED = "skipped"
    FAILED = "failed"


class EntryRecord(Protocol):
    """An entry as read: a storage row with these attributes."""

    @property
    def entry_id(self) -> str: ...
    @property
    def tenant_id(self) -> str: ...
    @property
    def project_id(self) -> str | None: ...
    @property
    def job_id(self) -> str: ...
    @property
    def job_type(self) -> str: ...
    @property
    def source_id(self) -> str: ...
    @property
    def category(self) -> str: ...
    @property
    def error_code(self) -> str: ...
    @property
    def message(self) -> str: ...
    @property
    def fingerprint(self) -> str: ...
    @property
    def retryable(self) -> bool: ...
    @property
    def attempts(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def first_failed_at(self) -> datetime: ...
    @property
    def last_failed_at(self) -> datetime: ...
    @property
    def replay_count(self) -> int: ...
    @property
    def replay_job_id(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Counts:
    total: int = 0
    pending: int = 0
    retryable: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.total + other.total,
            self.pending + other.pending,
            self.retryable + other.retryable,
        )


@dataclass(frozen=True, slots=True)
class Cluster:
    """The counters of one fingerprint (summed over projects when not narrowed)."""

    fingerprint: str
    category: str
    error_code: str
    sample_message: str
    counts: Counts
    last_failed_at: datetime


@dataclass(frozen=True, slots=True)
class Stats:
    totals: Counts
    oldest_pending_at: datetime | None
    oldest_pending_age_s: int | None
    categories: Sequence[tuple[str, Counts]]
    top_clusters: Sequence[Cluster]


@dataclass(frozen=True, slots=True)
class SummaryGroup:
    category: str
    error_code: str
    counts: Counts
    clusters: int
    last_failed_at: datetime


@dataclass(frozen=True, slots=True)
class Summary:
    groups: Sequence[SummaryGroup]
    totals: Counts


@dataclass(frozen=True, slots=True)
class EntryQuery:
    """A listing's or sweep's narrowing; None means "any". `failed_after` is inclusive,
    `failed_before` exclusive (lastFailedAt)."""

    tenant_id: str
    project_id: str | None = None
    status: str | None = None
    category: str | None = None
    error_code: str | None = None
    job_type: str | None = None
    source_id: str | None = None
    fingerprint: str | None = None
    failed_after: datetime | None = None
    failed_before: datetime | None = None


@dataclass(frozen=True, slots=True)
class ReplayResult:
    entry_id: str
    outcome: Outcome
    job_id: str | None = None
    reason: str | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """What one replay call did, in request (or sweep) order; `resource_id` is the
    entry of a single replay, "-" (AIP-159: any entry) for a batch or a sweep."""

    resource_id: str
    results: Sequence[ReplayResult]
    continuation_token: str | None = None

    def count(self, outcome: Outcome) -> int:
        return sum(1 for result in self.results if result.outcome is outcome)


def _ids(report: ReplayReport, outcome: Outcome) -> list[str]:
    return [r.entry_id for r in report.results if r.outcome is outcome]


def _replay_snapshot(report: ReplayReport) -> Mapping[str, Any]:
    return {
        "replayed": [
            {"entryId": r.entry_id, "jobId": r.job_id}
            for r in report.results
            if r.outcome is Outcome.REPLAYED
        ],
        "skippedEntryIds": _ids(report, Outcome.SKIPPED),
        "failedEntryIds": _ids(report, Outcome.FAILED),
    }


# The resource of a replay's one audit entry: "deadLetterEntries/{entryId}" for one,
# "deadLetterEntries/-" for a batch or sweep; after = every id with its outcome.
DEAD_LETTER_ENTRY: ResourceType[ReplayReport] = ResourceType(
    singular="dead-letter entry",
    collection="deadLetterEntries",
    id_field="entryId",
    id_of=lambda report: report.resource_id,
    snapshot=_replay_snapshot,
)

ENTRY_LISTING: ListingSpec[EntryRecord, EntryQuery] = ListingSpec(
    name="deadletter",
    sort=(
        SortKey("-lastFailedAt", "last_failed_at", TIME),
        SortKey("-entryId", "entry_id", TEXT),
    ),
    filters={
        "project": "project_id",
        "status": "status",
        "category": "category",
        "errorCode": "error_code",
        "jobType": "job_type",
        "sourceId": "source_id",
        "fingerprint": "fingerprint",
    },
)

PENDING_SWEEP: ListingSpec[EntryRecord, EntryQuery] = ListingSpec(
    name="deadletter-replay-pending",
    sort=(
        SortKey("lastFailedAt", "last_failed_at", TIME),
        SortKey("entryId", "entry_id", TEXT),
    ),
    filters={
        "project": "project_id",
        "category": "category",
        "errorCode": "error_code",
        "jobType": "job_type",
        "sourceId": "source_id",
        "fingerprint": "fingerprint",
        "failedAfter": "failed_after",
        "failedBefore": "failed_before",
    },
)

EntryPage = Page[EntryRecord]


# --- storage Protocols ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClusterCounters:
    """One row of cluster counters as stored (per tenant, project, fingerprint)."""

    fingerprint: str
    category: str
    error_code: str
    sample_message: str
    total: int
    pending: int
    retryable: int
    last_failed_at: datetime


class DeadLetterReads(Protocol):
    """Entries and counters outside a transaction: one round trip each."""

    async def get(self, tenant_id: str, entry_id: str, *, project_id: str | None) -> EntryRecord:
        """One entry; NotFound (DEAD_LETTER_ENTRY_NOT_FOUND) when absent, another
        tenant's or outside the project."""
        ...

    async def page(
        self, query: EntryQuery, after: tuple[Any, ...] | None, limit: int
    ) -> Sequence[EntryRecord]:
        """Up to `limit + 1` entries of `query` after `after` in ENTRY_LISTING's order."""
        ...

    async def clusters(self, tenant_id: str, *, project_id: str | None) -> list[ClusterCounters]:
        """The tenant's cluster counters with any entry (total > 0), of one project or
        all (a cluster of several projects comes once per project)."""
        ...

    async def oldest_pending(self, tenant_id: str, *, project_id: str | None) -> datetime | None:
        """The lastFailedAt of the oldest pending entry, None when none is pending."""
        ...


class DeadLetterRepository(Protocol):
    """Entries inside a unit of work."""

    async def by_ids(
        self, tenant_id: str, entry_ids: Sequence[str], *, project_id: str | None
    ) -> Sequence[EntryRecord]:
        """The tenant's (and project's) entries among `entry_ids`, any status."""
        ...

    async def pending(
        self, query: EntryQuery, after: tuple[Any, ...] | None, limit: int
    ) -> Sequence[EntryRecord]:
        """Up to `limit + 1` pending entries of `query` after `after` in PENDING_SWEEP's
        order (oldest first)."""
        ...

    async def jobs(self, tenant_id: str, job_ids: Sequence[str]) -> Mapping[str, Job]:
        """The tenant's jobs among `job_ids` (pruned ones are missing), by id."""
        ...

    async def claim(
        self, tenant_id: str, entry_ids: Sequence[str], *, now: datetime
    ) -> Mapping[str, str]:
        """Mark the tenant's entries among `entry_ids` replayed (replayCount + 1, a new
        replayJobId) only where still pending, taking them off their clusters' pending
        and retryable counts: the replay job id of each entry this call changed."""
        ...


class DeadLetterUnit(Protocol):
    """The repositories a replay uses: a `UnitOfWork` with the dead-letter one."""

    @property
    def deadletter(self) -> DeadLetterRepository: ...

    @property
    def uow(self) -> UnitOfWork: ...


class DeadLetterStore(Protocol):
    """Reads, and units of work with the dead-letter repository."""

    @property
    def reads(self) -> DeadLetterReads: ...

    def transaction(self) -> Any:
        """An async context manager yielding a `DeadLetterUnit` (one transaction)."""
        ...

    def notify_work(self, tenant_id: str, job_type: str) -> None: ...


# --- validation -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Filters:
    """Filters as the caller sent them; empty strings and None mean "any"."""

    category: str = ""
    error_code: str = ""
    job_type: str = ""
    source_id: str = ""
    fingerprint: str = ""
    status: str = ""
    failed_after: datetime | None = None
    failed_before: datetime | None = None
    violations: tuple[Violation, ...] = field(default=())


def _query(tenant_id: str, call: CallContext, filters: Filters) -> EntryQuery:
    """The query of `filters`, or InvalidArgument naming every bad one (JSON names)."""
    violations = list(filters.violations)
    if filters.status and filters.status not in STATUSES:
        violations.append(
            Violation(
                "status", f"must be one of {', '.join(STATUSES)}, got {shown(filters.status)}"
            )
        )
    if filters.category and not _CATEGORY.fullmatch(filters.category):
        violations.append(
            Violation(
                "category",
                f"must be a lowercase slug (a letter, then letters, digits, '.', '_' or '-'),"
                f" at most {CATEGORY_MAX} characters",
            )
        )
    if filters.error_code and (
        len(filters.error_code) > CODE_MAX or has_control(filters.error_code)
    ):
        violations.append(
            Violation(
                "errorCode", f"must be at most {CODE_MAX} characters, without control characters"
            )
        )
    if filters.job_type and (bad := jobs.validate_job_type(filters.job_type)) is not None:
        violations.append(bad)
    if filters.source_id and not _ID.fullmatch(filters.source_id):
        violations.append(
            Violation("sourceId", "must be 1 to 64 letters, digits, '.', '_', ':' or '-'")
        )
    if filters.fingerprint and not FINGERPRINT_PATTERN.fullmatch(filters.fingerprint):
        violations.append(Violation("fingerprint", "must be 16 lowercase hex digits"))
    after, before = filters.failed_after, filters.failed_before
    if after is not None and before is not None and before <= after:
        violations.append(Violation("failedBefore", "must be after failedAfter"))
    if violations:
        raise InvalidArgument.from_violations(violations)
    return EntryQuery(
        tenant_id=tenant_id,
        project_id=call.project_id,
        status=filters.status or None,
        category=filters.category or None,
        error_code=filters.error_code or None,
        job_type=filters.job_type or None,
        source_id=filters.source_id or None,
        fingerprint=filters.fingerprint or None,
        failed_after=after,
        failed_before=before,
    )


def check_entry_id(entry_id: str) -> bool:
    """Whether `entry_id` is in the issued alphabet (no entry has another)."""
    return bool(_ID.fullmatch(entry_id))


# --- reading --------------------------------------------------------------------------


async def list_entries(
    store: DeadLetterStore,
    tokens: PageTokens,
    call: CallContext,
    filters: Filters,
    *,
    limit: int,
    continuation_token: str,
) -> EntryPage:
    """One page of the tenant's entries, newest first (lastFailedAt desc, entryId desc).
    Raises InvalidArgument for a bad filter, `limit` or `continuationToken`."""
    query = _query(call.require_tenant(), call, filters)
    return await ENTRY_LISTING.page(
        tokens, query, limit=limit, token=continuation_token, read=store.reads.page
    )


def _merged(rows: Sequence[ClusterCounters]) -> list[Cluster]:
    """One cluster per fingerprint: a project-wide read has one row per project."""
    merged: dict[str, Cluster] = {}
    for row in rows:
        counts = Counts(row.total, row.pending, row.retryable)
        seen = merged.get(row.fingerprint)
        if seen is None:
            merged[row.fingerprint] = Cluster(
                row.fingerprint,
                row.category,
                row.error_code,
                row.sample_message,
                counts,
                row.last_failed_at,
            )
            continue
        newer = row.last_failed_at > seen.last_failed_at
        merged[row.fingerprint] = Cluster(
            seen.fingerprint,
            seen.category,
            seen.error_code,
            row.sample_message if newer else seen.sample_message,
            seen.counts + counts,
            row.last_failed_at if newer else seen.last_failed_at,
        )
    return list(merged.values())


async def stats(store: DeadLetterStore, call: CallContext, *, now: datetime) -> Stats:
    """Totals, the oldest pending entry (its lastFailedAt and age in whole seconds at
    `now`), counts per category (ordered by category) and the `TOP_CLUSTERS` largest
    clusters (pending desc, total desc, fingerprint)."""
    tenant_id = call.require_tenant()
    clusters = _merged(await store.reads.clusters(tenant_id, project_id=call.project_id))
    oldest = await store.reads.oldest_pending(tenant_id, project_id=call.project_id)
    totals = Counts()
    categories: dict[str, Counts] = {}
    for cluster in clusters:
        totals += cluster.counts
        categories[cluster.category] = categories.get(cluster.category, Counts()) + cluster.counts
    top = sorted(clusters, key=lambda c: (-c.counts.pending, -c.counts.total, c.fingerprint))
    age = None if oldest is None else max(0, (micros(now) - micros(oldest)) // 1_000_000)
    return Stats(
        totals=totals,
        oldest_pending_at=oldest,
        oldest_pending_age_s=age,
        categories=sorted(categories.items(), key=lambda item: item[0].encode()),
        top_clusters=top[:TOP_CLUSTERS],
    )


async def summary(store: DeadLetterStore, call: CallContext) -> Summary:
    """Entries per (category, errorCode), ordered by category then errorCode (byte-wise,
    ascending, as the contract's ordering rule), with totals."""
    tenant_id = call.require_tenant()
    groups: dict[tuple[str, str], SummaryGroup] = {}
    totals = Counts()
    for cluster in _merged(await store.reads.clusters(tenant_id, project_id=call.project_id)):
        key = (cluster.category, cluster.error_code)
        seen = groups.get(key)
        totals += cluster.counts
        if seen is None:
            groups[key] = SummaryGroup(*key, cluster.counts, 1, cluster.last_failed_at)
        else:
            groups[key] = SummaryGroup(
                *key,
                seen.counts + cluster.counts,
                seen.clusters + 1,
                max(seen.last_failed_at, cluster.last_failed_at),
            )
    ordered = sorted(groups.values(), key=lambda g: (g.category.encode(), g.error_code.encode()))
    return Summary(groups=ordered, totals=totals)


# --- replaying ------------------------------------------------------------------------


def _skip(entry: EntryRecord) -> ReplayResult:
    status = EntryStatus(entry.status)
    reason = "ALREADY_REPLAYED" if status is EntryStatus.REPLAYED else "ALREADY_RESOLVED"
    detail = f"; its replay is job {entry.replay_job_id!r}" if entry.replay_job_id else ""
    return ReplayResult(
        entry.entry_id,
        Outcome.SKIPPED,
        reason=reason,
        message=f"entry is {status.value}{detail}; only a pending entry is replayed",
    )


async def _replay(
    unit: DeadLetterUnit,
    call: CallContext,
    entries: Sequence[EntryRecord],
    *,
    now: datetime,
    single: bool = False,
) -> dict[str, ReplayResult]:
    """Replay `entries` (distinct, the caller's) in `unit`: the result of each by id.
    A pending entry whose job a process instance owns (JOB_OWNED_BY_PROCESS,
    `jobs.owned_refusal`) or whose job is a pack run's step (JOB_IN_PACK_RUN,
    `jobs.pack_run_refusal`) is skipped, or refused with `single`."""
    tenant_id = call.require_tenant()
    results: dict[str, ReplayResult] = {}
    pending = [e for e in entries if e.status == EntryStatus.PENDING]
    for entry in entries:
        if entry.status != EntryStatus.PENDING:
            results[entry.entry_id] = _skip(entry)
    originals = await unit.deadletter.jobs(tenant_id, sorted({e.job_id for e in pending}))
    source_ids = sorted({job.source_id for job in originals.values()})
    states: Mapping[str, SourceState] = (
        await unit.uow.jobs.source_states(tenant_id, source_ids, project_id=call.project_id)
        if source_ids
        else {}
    )
    owners = sorted({job.owner for job in originals.values() if job.owner is not None})
    instances = await unit.uow.jobs.owning_instances(tenant_id, owners) if owners else {}
    in_runs = [job for job in originals.values() if job.pack_run_id is not None]
    runs = await unit.uow.jobs.runs_of_steps(tenant_id, in_runs) if in_runs else {}
    clones: dict[str, Job] = {}
    for entry in pending:
        original = originals.get(entry.job_id)
        refusal: FailedPrecondition | None = None
        if original is not None and original.owner is not None:
            refusal = jobs.owned_refusal(original, instances.get(original.owner))
        elif original is not None and original.job_id in runs:
            refusal = jobs.pack_run_refusal(original, runs[original.job_id])
        if refusal is not None:
            if single:
                raise refusal
            results[entry.entry_id] = ReplayResult(
                entry.entry_id, Outcome.SKIPPED, reason=refusal.reason, message=refusal.message
            )
            continue
        if original is None:
            results[entry.entry_id] = ReplayResult(
                entry.entry_id,
                Outcome.FAILED,
                reason="JOB_PRUNED",
                message=f"job {entry.job_id!r} was pruned after the retention period;"
                " it cannot be replayed",
            )
            continue
        error = jobs.source_error(original.source_id, states.get(original.source_id))
        if error is not None:
            results[entry.entry_id] = ReplayResult(
                entry.entry_id, Outcome.FAILED, reason=error.reason, message=error.message
            )
            continue
        clones[entry.entry_id] = jobs.replay_clone(
            original,
            now=now,
            trace_id=call.trace_id or None,  # the replaying call's trace
        )
    # the claim names each clone (storage draws the ids: a uuid4, as the clone's own)
    claimed = await unit.deadletter.claim(tenant_id, list(clones), now=now)
    won: list[Job] = []
    for entry_id, clone in clones.items():
        if entry_id in claimed:
            won.append(replace(clone, job_id=claimed[entry_id]))
            results[entry_id] = ReplayResult(entry_id, Outcome.REPLAYED, job_id=claimed[entry_id])
        else:  # a concurrent call claimed it first
            results[entry_id] = ReplayResult(
                entry_id,
                Outcome.SKIPPED,
                reason="ALREADY_REPLAYED",
                message="entry was replayed by a concurrent call; only a pending entry is replayed",
            )
    if won:
        await unit.uow.jobs.insert(won)
        events = [
            event
            for clone in won
            for event in jobs.replay_events(clone.replay_of or "", clone, call)
        ]
        await unit.uow.events.append_many(events)
    return results


async def _commit_replay(
    store: DeadLetterStore,
    call: CallContext,
    resource_id: str,
    load: Any,
    *,
    now: datetime,
    single: bool = False,
) -> tuple[ReplayReport, list[str]]:
    """One replay call in one unit of work: `load(unit)` returns (entries to replay,
    results decided before replaying in request order as (entry_id, result or None),
    continuation token); the report and the replayed job types."""
    async with store.transaction() as unit:
        entries, order, token = await load(unit)
        replayed = await _replay(unit, call, entries, now=now, single=single)
        results = [result or replayed[entry_id] for entry_id, result in order]
        report = ReplayReport(resource_id, results, token)
        await audit.record(unit.uow, call, DEAD_LETTER_ENTRY, before=None, after=report)
        types = {e.entry_id: e.job_type for e in entries}
    job_types = sorted({types[r.entry_id] for r in results if r.outcome is Outcome.REPLAYED})
    return report, job_types


async def replay_entry(
    store: DeadLetterStore, call: CallContext, *, entry_id: str, now: datetime
) -> ReplayReport:
    """Replay one entry (see the module docstring). Raises NotFound
    (DEAD_LETTER_ENTRY_NOT_FOUND) for an unknown entry or one of another tenant or
    project, FailedPrecondition for a pending entry whose job a process instance owns
    (JOB_OWNED_BY_PROCESS) or a pack run re-runs (JOB_IN_PACK_RUN); nothing is written
    then."""
    tenant_id = call.require_tenant()
    if not check_entry_id(entry_id):
        raise NotFound.of(DEAD_LETTER_ENTRY, entry_id)

    async def load(unit: DeadLetterUnit) -> tuple[Any, Any, None]:
        found = await unit.deadletter.by_ids(tenant_id, [entry_id], project_id=call.project_id)
        if not found:
            raise NotFound.of(DEAD_LETTER_ENTRY, entry_id)
        return found, [(entry_id, None)], None

    report, job_types = await _commit_replay(store, call, entry_id, load, now=now, single=True)
    for job_type in job_types:
        store.notify_work(tenant_id, job_type)
    return report


async def replay_batch(
    store: DeadLetterStore, call: CallContext, *, entry_ids: Sequence[str], now: datetime
) -> ReplayReport:
    """Replay up to `BATCH_MAX` entries by id; results in request order (an unknown id
    fails, a repeated id is skipped). Raises InvalidArgument naming `entryIds` (none,
    too many) or `entryIds[i]` (outside the id alphabet); nothing is written then."""
    tenant_id = call.require_tenant()
    if not 1 <= len(entry_ids) <= BATCH_MAX:
        raise InvalidArgument.of(
            "entryIds", f"must hold 1 to {BATCH_MAX} entry ids, got {len(entry_ids)}"
        )
    bad = [
        Violation(f"entryIds[{i}]", "must be 1 to 64 letters, digits, '.', '_', ':' or '-'")
        for i, entry_id in enumerate(entry_ids)
        if not check_entry_id(entry_id)
    ]
    if bad:
        raise InvalidArgument.from_violations(bad)

    async def load(unit: DeadLetterUnit) -> tuple[Any, Any, None]:
        distinct = sorted(set(entry_ids))
        found = await unit.deadletter.by_ids(tenant_id, distinct, project_id=call.project_id)
        known = {entry.entry_id for entry in found}
        order: list[tuple[str, ReplayResult | None]] = []
        seen: set[str] = set()
        for entry_id in entry_ids:
            if entry_id in seen:
                order.append(
                    (
                        entry_id,
                        ReplayResult(
                            entry_id,
                            Outcome.SKIPPED,
                            reason="DUPLICATE_ENTRY_ID",
                            message="entry id named earlier in this call",
                        ),
                    )
                )
            elif entry_id not in known:
                missing = NotFound.of(DEAD_LETTER_ENTRY, entry_id)
                order.append(
                    (
                        entry_id,
                        ReplayResult(
                            entry_id, Outcome.FAILED, reason=missing.reason, message=missing.message
                        ),
                    )
                )
            else:
                order.append((entry_id, None))
            seen.add(entry_id)
        return found, order, None

    report, job_types = await _commit_replay(store, call, "-", load, now=now)
    for job_type in job_types:
        store.notify_work(tenant_id, job_type)
    return report


async def replay_pending(
    store: DeadLetterStore,
    tokens: PageTokens,
    call: CallContext,
    filters: Filters,
    *,
    limit: int,
    limit_max: int,
    continuation_token: str,
    now: datetime,
) -> ReplayReport:
    """Replay the pending entries matching `filters`, oldest first, at most `limit` (0:
    `PENDING_LIMIT_DEFAULT`; above `limit_max`: `limit_max`) per call, resuming after
    the signed `continuation_token`'s position. The report's token resumes after the
    last entry examined, None when no more matched. Raises InvalidArgument for a bad
    filter, `limit` or `continuationToken`; nothing is written then."""
    tenant_id = call.require_tenant()
    if limit < 0:
        raise InvalidArgument.of(
            "limit",
            f"must not be negative (0 means the default of {PENDING_LIMIT_DEFAULT}; above"
            f" {limit_max} means {limit_max}), got {limit}",
        )
    size = min(limit or PENDING_LIMIT_DEFAULT, limit_max)
    query = _query(tenant_id, call, filters)
    binding = PENDING_SWEEP.binding(query)
    after = (
        PENDING_SWEEP.position(tokens.decode(continuation_token, binding=binding))
        if continuation_token
        else None
    )

    async def load(unit: DeadLetterUnit) -> tuple[Any, Any, str | None]:
        rows = await unit.deadletter.pending(query, after, size)
        examined = list(rows[:size])
        token = None
        if len(rows) > size:
            token = tokens.encode(PENDING_SWEEP.key(examined[-1]), binding=binding)
        return examined, [(entry.entry_id, None) for entry in examined], token

    report, job_types = await _commit_replay(store, call, "-", load, now=now)
    for job_type in job_types:
        store.notify_work(tenant_id, job_type)
    return report

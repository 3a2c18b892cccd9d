"""What the domain asks of storage: a store with reads and units of work, as Protocols.

The domain never sees SQL, sessions or row classes. A `Store` gives each resource's
read side (one round trip each, no transaction) and opens a `UnitOfWork`: one
database transaction holding each resource's repository, committed when the block
succeeds and rolled back when it raises, so a change and its audit entry commit
together or not at all. `server/storage/store.py` implements both. Repositories
raise domain errors themselves: a duplicate is `AlreadyExists`, an absent (or not
the caller's) resource `NotFound`.

A new resource adds its repository Protocol next to its rules (e.g.
`domain/sources.py`) and one attribute here.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from server.domain.audit import AuditEntry, AuditLog, AuditReads
    from server.domain.backfills import BackfillReads, BackfillRepository
    from server.domain.events import EventLog, EventReads, NewEvent
    from server.domain.job_endings import JobEndings
    from server.domain.jobs import Job, JobReads, JobRepository
    from server.domain.leasing import LeaseStore
    from server.domain.pack_runs import PackRunReads, PackRunRepository
    from server.domain.quotas import QuotaReads, QuotaRepository
    from server.domain.schedules import ScheduleReads, ScheduleRepository
    from server.domain.sources import SourceReads, SourceRepository


class UnitOfWork(Protocol):
    """The repositories of one transaction."""

    @property
    def sources(self) -> SourceRepository: ...

    @property
    def audit(self) -> AuditLog: ...

    @property
    def events(self) -> EventLog: ...

    @property
    def jobs(self) -> JobRepository: ...

    @property
    def quotas(self) -> QuotaRepository: ...

    @property
    def pack_runs(self) -> PackRunRepository: ...

    @property
    def schedules(self) -> ScheduleRepository: ...

    @property
    def backfills(self) -> BackfillRepository: ...


class Store(Protocol):
    """Reads outside any transaction, and units of work."""

    @property
    def sources(self) -> SourceReads: ...

    @property
    def audit(self) -> AuditReads: ...

    @property
    def events(self) -> EventReads: ...

    @property
    def jobs(self) -> JobReads: ...

    @property
    def quotas(self) -> QuotaReads: ...

    @property
    def pack_runs(self) -> PackRunReads: ...

    @property
    def schedules(self) -> ScheduleReads: ...

    @property
    def backfills(self) -> BackfillReads: ...

    @property
    def leases(self) -> LeaseStore: ...

    @property
    def endings(self) -> JobEndings:
        """Hints that owned jobs ended (`domain/job_endings.py`), after their commit."""
        ...

    async def insert_plain_job(self, job: Job, event: NewEvent, entry: AuditEntry) -> bool:
        """Insert a new `job` with its `event` and audit `entry`, committed at once,
        when it is plainly admissible: its source enabled and unpaused (in the job's
        project), no quota for its job type, its idempotency key free. False, with
        nothing written, otherwise or where the store has no such shortcut; the
        caller then enqueues in a unit of work, which says why or throttles."""
        ...

    def notify_work(self, tenant_id: str, job_type: str, count: int = 1) -> None:
        """Wake up to `count` workers long-polling for `job_type` in `tenant_id`: call
        after the commit that made `count` jobs of it leasable now (e.g. an enqueue).
        A worker that leases all it asked for wakes the next, so 1 is never wrong."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[UnitOfWork]:
        """One unit of work: commit when the block succeeds, roll back when it raises."""
        ...

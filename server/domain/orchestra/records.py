"""What the Orchestra domain reads and writes, and what it asks of storage (Protocols).

Rows come back from storage as anything with these attributes (Core rows or the
dataclasses here); the domain writes the dataclasses. `OrchestraStore` wraps the
product's `Store`: its units of work carry the Orchestra repository beside the
product's own (`base`), in one transaction, so a step, the jobs it enqueues, its
events and an audit entry commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Protocol

from server.domain.resources import ResourceType

if TYPE_CHECKING:
    from server.domain.jobs import SourceState
    from server.domain.units import Store, UnitOfWork

RUNNING, COMPLETED, FAILED, CANCELED = "running", "completed", "failed", "canceled"
# Sagas only (domain/orchestra/sagas.py): running its compensations, and rolled back.
COMPENSATING, COMPENSATED = "compensating", "compensated"
INSTANCE_STATUSES: Final = (RUNNING, COMPENSATING, COMPLETED, COMPENSATED, FAILED, CANCELED)
# Not ended: `ended_at` stays unset.
ACTIVE_STATUSES: Final = (RUNNING, COMPENSATING)


class DefinitionRecord(Protocol):
    @property
    def definition_id(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def tenant_id(self) -> str | None: ...
    @property
    def document(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def created_by(self) -> str: ...


@dataclass(frozen=True, slots=True)
class StoredDefinition:
    """A definition version as written (`document`: the file format, compact JSON)."""

    definition_id: str
    version: int
    tenant_id: str | None
    document: str
    created_at: datetime
    created_by: str


class InstanceSummaryRecord(Protocol):
    """An item of the instance list."""

    @property
    def instance_id(self) -> str: ...
    @property
    def definition_id(self) -> str: ...
    @property
    def status(self) -> str: ...


class InstanceRecord(Protocol):
    @property
    def instance_id(self) -> str: ...
    @property
    def tenant_id(self) -> str: ...
    @property
    def definition_id(self) -> str: ...
    @property
    def definition_version(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def variables(self) -> str: ...
    @property
    def incident(self) -> str | None: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def updated_at(self) -> datetime: ...
    @property
    def saga(self) -> bool: ...
    @property
    def trace_id(self) -> str | None: ...
    @property
    def trace_parent(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Instance:
    instance_id: str
    tenant_id: str
    definition_id: str
    definition_version: int
    status: str
    variables: str  # compact JSON of an object
    incident: str | None
    created_at: datetime
    updated_at: datetime
    ended_at: datetime | None = None
    saga: bool = False  # the definition version declares a compensation
    # The start call's trace id and its span's W3C traceparent (instances.py, Traces).
    trace_id: str | None = None
    trace_parent: str | None = None


class TokenRecord(Protocol):
    @property
    def token_id(self) -> str: ...
    @property
    def instance_id(self) -> str: ...
    @property
    def tenant_id(self) -> str: ...
    @property
    def node_id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def job_id(self) -> str | None: ...
    @property
    def due_at(self) -> datetime | None: ...
    @property
    def created_at(self) -> datetime: ...


@dataclass(frozen=True, slots=True)
class Token:
    token_id: str
    instance_id: str
    tenant_id: str
    node_id: str
    status: str
    job_id: str | None
    due_at: datetime | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Pending:
    """A token the engine itself moves on: a due timer, or a token whose job ended
    (`job_status` the job's terminal status)."""

    tenant_id: str
    instance_id: str
    token_id: str
    job_id: str | None = None
    job_status: str | None = None


@dataclass(frozen=True, slots=True)
class SagaStep:
    """A saga step as it starts: its service task's job was just enqueued."""

    step_id: str  # the token's id
    instance_id: str
    tenant_id: str
    node_id: str
    job_type: str
    job_id: str
    compensation: str | None  # the job type that undoes it; None: nothing to undo
    started_at: datetime


class SagaStepRecord(Protocol):
    """A stored saga step with its compensation (storage/tables.py
    OrchestraSagaStepRow)."""

    @property
    def step_id(self) -> str: ...
    @property
    def instance_id(self) -> str: ...
    @property
    def tenant_id(self) -> str: ...
    @property
    def position(self) -> int: ...
    @property
    def node_id(self) -> str: ...
    @property
    def job_type(self) -> str: ...
    @property
    def job_id(self) -> str | None: ...
    @property
    def compensation(self) -> str | None: ...
    @property
    def status(self) -> str: ...
    @property
    def result(self) -> str | None: ...
    @property
    def error(self) -> str | None: ...
    @property
    def started_at(self) -> datetime: ...
    @property
    def ended_at(self) -> datetime | None: ...
    @property
    def compensation_order(self) -> int | None: ...
    @property
    def compensation_status(self) -> str | None: ...
    @property
    def compensation_job_id(self) -> str | None: ...
    @property
    def compensation_started_at(self) -> datetime | None: ...
    @property
    def compensation_ended_at(self) -> datetime | None: ...
    @property
    def compensation_error(self) -> str | None: ...


class SagaInstanceRecord(InstanceRecord, Protocol):
    @property
    def ended_at(self) -> datetime | None: ...


@dataclass(frozen=True, slots=True)
class CompensationEnding:
    """A running compensation whose job has ended (`job_status` its terminal status)."""

    tenant_id: str
    instance_id: str
    step_id: str
    job_id: str
    job_status: str
    trace_id: str | None = None  # the instance's run (instances.py, Traces)
    trace_parent: str | None = None


class SagaCountRecord(Protocol):
    """One group of the saga statistics: the tenant's sagas of one definition in one
    status, and the sum of their durations in seconds (None when none has ended)."""

    @property
    def definition_id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def instances(self) -> int: ...
    @property
    def seconds(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class DefinitionQuery:
    """The admin listing's narrowing; `tenant_id` is the listing's binding ("-": the
    platform, definitions are not tenant-owned)."""

    tenant_id: str = "-"
    definition_id: str | None = None


class OrchestraRepository(Protocol):
    """Orchestra rows inside a unit of work."""

    async def definition(self, definition_id: str, version: int | None) -> DefinitionRecord | None:
        """The version (the latest when None), or None."""
        ...

    async def insert_definition(self, definition: StoredDefinition) -> bool:
        """Insert unless the (id, version) exists; whether it was inserted."""
        ...

    async def tenant_exists(self, tenant_id: str) -> bool:
        """Whether the tenant exists (a tenant-scoped definition must name one)."""
        ...

    async def insert_instance(self, instance: Instance) -> None: ...

    async def lock_instance(
        self, tenant_id: str, instance_id: str, *, skip_locked: bool = False
    ) -> InstanceRecord | None:
        """The tenant's instance, locked for this transaction (FOR UPDATE on
        PostgreSQL, the database write lock on SQLite); None when absent, another
        tenant's, or (with `skip_locked`) locked by another transaction."""
        ...

    async def update_instance(
        self,
        instance_id: str,
        *,
        status: str,
        variables: str,
        incident: str | None,
        now: datetime,
    ) -> None:
        """Write the instance's state; `ended_at` is set when `status` is not running."""
        ...

    async def token(self, tenant_id: str, token_id: str) -> TokenRecord | None: ...

    async def tokens(self, instance_id: str) -> Sequence[TokenRecord]:
        """The instance's live tokens, oldest first."""
        ...

    async def take_token(self, token_id: str, status: str) -> bool:
        """Delete the token if it is still in `status`: whether this call took it (the
        one claim that makes a signal, a timer or a job ending count once)."""
        ...

    async def insert_tokens(self, tokens: Sequence[Token]) -> None: ...

    async def delete_tokens(self, token_ids: Sequence[str]) -> None: ...

    async def delete_instance_tokens(self, instance_id: str) -> None: ...

    async def own_jobs(self, owners: Mapping[str, str]) -> None:
        """Set the `owner` of the jobs just enqueued in this unit of work (job id ->
        owner), so their endings are announced (domain/job_endings.py)."""
        ...

    async def service_source(self, tenant_id: str, now: datetime) -> tuple[str, SourceState]:
        """The id and state of the tenant's source of service-task jobs (named
        "orchestra", type "orchestra"), created on first use; the state saves the
        enqueue that follows its own read of the source."""
        ...

    # --- sagas (domain/orchestra/sagas.py) ---

    async def insert_saga_steps(self, steps: Sequence[SagaStep]) -> None:
        """Insert steps of one instance, `position` after the instance's last one in
        the order given; status running."""
        ...

    async def saga_steps(self, instance_id: str) -> Sequence[SagaStepRecord]:
        """The instance's steps by position."""
        ...

    async def end_saga_step(
        self,
        step_id: str,
        *,
        status: str,
        ended_at: datetime,
        result: str | None,
        error: str | None,
    ) -> bool:
        """Record how a running step's job ended; whether it was still running."""
        ...

    async def plan_compensations(self, orders: Mapping[str, int]) -> None:
        """Give each step (id -> order) its compensation order, status pending."""
        ...

    async def start_compensation(self, step_id: str, job_id: str, now: datetime) -> None:
        """A pending compensation's job was enqueued: status running."""
        ...

    async def end_compensation(
        self,
        step_id: str,
        *,
        expect: str,
        status: str,
        error: str | None,
        started_at: datetime | None,
        ended_at: datetime | None,
    ) -> bool:
        """Move a compensation from `expect` to `status`; whether it was in `expect`
        (the claim that makes a compensation job's ending count once). `started_at`
        is written when the compensation never started (None keeps the stored one)."""
        ...

    async def end_pending_compensations(self, instance_id: str, status: str) -> int:
        """Every pending compensation of the instance to `status` (skipped, canceled);
        how many."""
        ...


class OrchestraReads(Protocol):
    """Orchestra rows outside a transaction: one round trip each."""

    async def definition(
        self, definition_id: str, version: int | None
    ) -> DefinitionRecord | None: ...

    async def definitions_page(
        self, query: DefinitionQuery, after: tuple[Any, ...] | None, limit: int
    ) -> Sequence[DefinitionRecord]: ...

    async def instance(self, tenant_id: str, instance_id: str) -> InstanceRecord | None: ...

    async def token(self, tenant_id: str, token_id: str) -> TokenRecord | None: ...

    async def instance_with_tokens(
        self, tenant_id: str, instance_id: str
    ) -> tuple[InstanceRecord, Sequence[TokenRecord]] | None: ...

    async def instances(
        self, tenant_id: str, *, definition_id: str | None, status: str | None, limit: int
    ) -> Sequence[InstanceSummaryRecord]:
        """The tenant's `limit` newest instances (created_at, instance_id descending)."""
        ...

    async def due_timers(self, now: datetime, limit: int) -> Sequence[Pending]:
        """Timer tokens due at `now`, earliest first."""
        ...

    async def ended_jobs(
        self, limit: int, job_ids: Sequence[str] | None = None
    ) -> Sequence[Pending]:
        """Tokens waiting for a job that has ended (succeeded, dead_lettered, canceled);
        only those waiting for one of `job_ids` when given."""
        ...

    async def ended_compensations(self, limit: int) -> Sequence[CompensationEnding]:
        """Running compensations whose job has ended."""
        ...

    async def saga(
        self, tenant_id: str, instance_id: str
    ) -> tuple[SagaInstanceRecord, Sequence[SagaStepRecord]] | None:
        """The tenant's saga instance with its steps by position; None when absent,
        another tenant's or not a saga."""
        ...

    async def saga_counts(self, tenant_id: str) -> Sequence[SagaCountRecord]:
        """The tenant's sagas grouped by (definition, status) with their durations."""
        ...


class OrchestraUnit(Protocol):
    @property
    def base(self) -> UnitOfWork: ...

    @property
    def orchestra(self) -> OrchestraRepository: ...


class OrchestraStore(Protocol):
    @property
    def base(self) -> Store: ...

    @property
    def orchestra(self) -> OrchestraReads: ...

    def transaction(self) -> AbstractAsyncContextManager[OrchestraUnit]: ...

    @property
    def parallel_writes(self) -> bool:
        """Whether write transactions on different rows run at once (PostgreSQL's row
        locks), or one after another whatever is asked (SQLite's one writer per
        database, where more at once only wait in the busy handler)."""
        ...


def _definition_snapshot(definition: DefinitionRecord) -> dict[str, Any]:
    return {
        "id": definition.definition_id,
        "version": definition.version,
        "tenant": definition.tenant_id,
    }


DEFINITION: ResourceType[DefinitionRecord] = ResourceType(
    singular="process definition",
    collection="orchestra-definitions",
    id_field="definition_id",
    id_of=lambda d: f"{d.definition_id}/versions/{d.version}",
    snapshot=_definition_snapshot,
)
INSTANCE: ResourceType[InstanceRecord] = ResourceType(
    singular="instance",
    collection="orchestra-instances",
    id_field="instance_id",
    id_of=lambda i: i.instance_id,
    snapshot=lambda i: {"id": i.instance_id, "status": i.status},
)
TOKEN: ResourceType[TokenRecord] = ResourceType(
    singular="token",
    collection="orchestra-tokens",
    id_field="token_id",
    id_of=lambda t: t.token_id,
    snapshot=lambda t: {"id": t.token_id, "node_id": t.node_id, "status": t.status},
)
SAGA: ResourceType[SagaInstanceRecord] = ResourceType(
    singular="saga",
    collection="sagas",
    id_field="sagaId",
    id_of=lambda i: i.instance_id,
    snapshot=lambda i: {"id": i.instance_id, "status": i.status},
)

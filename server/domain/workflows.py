"""Workflows (seed 002 `/workflows*`; issue 13 point 1): the process definitions a
tenant can run, runs of them, and their history. A workflow is an Orchestra process
definition (DESIGN.md §4.3) and a run is a process instance (`runId` = instance id);
this module adds the mesh API's views over them and the shipped definition, and
leaves every move to the process engine (`domain/orchestra/instances.py`).

- `list_workflows`: definitions shared by every tenant or scoped to the caller's,
  one item per definition id with all its versions, by definition id (AIP-158 keyset
  pages, tokens bound to the tenant).
- `run_workflow`: `instances.start_process` of the latest version (the shipped
  `multi_source_ingestion` by default), audited as "workflows.run" in the start's
  unit of work.
- `list_runs`: the tenant's instances newest first, by (created_at, instance_id)
  descending, with optional exact definition and status filters.
- `install_shipped`: store a shipped definition at server start unless that version
  (or a newer one) is stored already; a definition of that id scoped to one tenant
  is left alone (logged by the caller), never overwritten.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol

from server.domain.context import CallContext
from server.domain.errors import InvalidArgument, shown
from server.domain.orchestra import instances
from server.domain.orchestra.definitions import ModelCache, put_definition
from server.domain.orchestra.instances import OrchestraLimits
from server.domain.orchestra.model import DefinitionSpec
from server.domain.orchestra.records import INSTANCE_STATUSES, InstanceRecord, OrchestraStore
from server.domain.orchestra.validation import DEFINITION_ID_RULE, valid_definition_id
from server.domain.pagination import TEXT, TIME, ListingSpec, Page, PageTokens, SortKey
from server.domain.resources import ResourceType

SHIPPED_DEFINITION_ID: Final = "multi_source_ingestion"
INSTALL_METHOD: Final = "/orchestrator.mesh.v1.WorkflowsService/InstallShipped"


def _run_snapshot(instance: InstanceRecord) -> Mapping[str, Any]:
    return {
        "runId": instance.instance_id,
        "definitionId": instance.definition_id,
        "definitionVersion": instance.definition_version,
        "status": instance.status,
    }


# Audit action of RunWorkflow: "workflows.run"; resource workflows/{definitionId}/runs/{runId}.
WORKFLOW_RUN: Final[ResourceType[InstanceRecord]] = ResourceType(
    singular="workflow",
    collection="workflows",
    id_field="runId",
    id_of=lambda instance: f"{instance.definition_id}/runs/{instance.instance_id}",
    snapshot=_run_snapshot,
)


class WorkflowRecord(Protocol):
    """One workflow as read: a definition id with its versions (ascending), its scope
    and its latest version's document and time."""

    @property
    def definition_id(self) -> str: ...
    @property
    def versions(self) -> Sequence[int]: ...
    @property
    def tenant_id(self) -> str | None: ...
    @property
    def document(self) -> str: ...
    @property
    def updated_at(self) -> datetime: ...


class RunRecord(Protocol):
    """One run as read: an instance row's columns the history shows."""

    @property
    def instance_id(self) -> str: ...
    @property
    def definition_id(self) -> str: ...
    @property
    def definition_version(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def ended_at(self) -> datetime | None: ...


@dataclass(frozen=True, slots=True)
class WorkflowQuery:
    tenant_id: str


@dataclass(frozen=True, slots=True)
class RunQuery:
    tenant_id: str
    definition_id: str | None = None
    status: str | None = None


WORKFLOW_LISTING: Final[ListingSpec[WorkflowRecord, WorkflowQuery]] = ListingSpec(
    name="workflows",
    sort=(SortKey("definitionId", "definition_id", TEXT),),
    filters={},
)
RUN_LISTING: Final[ListingSpec[RunRecord, RunQuery]] = ListingSpec(
    name="workflow-runs",
    sort=(SortKey("-startedAt", "created_at", TIME), SortKey("-runId", "instance_id", TEXT)),
    filters={"definitionId": "definition_id", "status": "status"},
)


class WorkflowReads(Protocol):
    """What the views read (one round trip or two each, no transaction)."""

    async def workflows_page(
        self, query: WorkflowQuery, after: tuple[Any, ...] | None, limit: int
    ) -> Sequence[WorkflowRecord]:
        """Up to `limit + 1` definition ids available to the tenant after `after`, in
        WORKFLOW_LISTING's order."""
        ...

    async def runs_page(
        self, query: RunQuery, after: tuple[Any, ...] | None, limit: int
    ) -> Sequence[RunRecord]:
        """Up to `limit + 1` of the tenant's instances after `after`, in RUN_LISTING's
        order (newest first)."""
        ...


def job_types_of(document: str) -> list[str]:
    """The job types a definition's workers lease: every service task's job type and
    compensation job type, sorted, without repeats."""
    parsed: dict[str, Any] = json.loads(document)
    found: set[str] = set()
    for node in parsed.get("nodes", ()):
        for key in ("job_type", "compensation"):
            value = node.get(key)
            if isinstance(value, str) and value:
                found.add(value)
    return sorted(found)


async def list_workflows(
    reads: WorkflowReads, tokens: PageTokens, call: CallContext, *, limit: int, token: str
) -> Page[WorkflowRecord]:
    """One page of the workflows available to the caller's tenant. Raises
    InvalidArgument for a negative limit or a bad continuation token."""
    query = WorkflowQuery(tenant_id=call.require_tenant())
    return await WORKFLOW_LISTING.page(
        tokens, query, limit=limit, token=token, read=reads.workflows_page
    )


async def list_runs(
    reads: WorkflowReads,
    tokens: PageTokens,
    call: CallContext,
    *,
    definition_id: str,
    status: str,
    limit: int,
    token: str,
) -> Page[RunRecord]:
    """One page of the tenant's runs, newest first. Raises InvalidArgument naming
    `definitionId` (not a definition id), `status` (not a run status), `limit` or
    `continuationToken`."""
    if definition_id and not valid_definition_id(definition_id):
        raise InvalidArgument.of("definitionId", DEFINITION_ID_RULE)
    if status and status not in INSTANCE_STATUSES:
        raise InvalidArgument.of(
            "status", f"must be one of {', '.join(INSTANCE_STATUSES)}, got {shown(status)}"
        )
    query = RunQuery(
        tenant_id=call.require_tenant(),
        definition_id=definition_id or None,
        status=status or None,
    )
    return await RUN_LISTING.page(tokens, query, limit=limit, token=token, read=reads.runs_page)


async def run_workflow(
    store: OrchestraStore,
    models: ModelCache,
    call: CallContext,
    definition_id: str,
    initial: Mapping[str, Any] | None,
    limits: OrchestraLimits,
    *,
    now: datetime,
) -> str:
    """Start a run of the latest version of `definition_id` (the shipped definition
    when empty) available to the caller's tenant; the run id. Audited ("workflows.run")
    in the start's unit of work. Raises NotFound (PROCESS_DEFINITION_NOT_FOUND),
    InvalidArgument (variables) and the job engine's refusal of the first step's
    jobs (FailedPrecondition SOURCE_PAUSED, SOURCE_DISABLED), as
    `instances.start_process`; nothing is written (no run, no audit entry) then.
    A `definition_id` that is not a definition id (DEFINITION_ID_RULE: no control
    character, at most 64 characters) is InvalidArgument naming `definitionId`."""
    if definition_id and not valid_definition_id(definition_id):
        raise InvalidArgument.of("definitionId", DEFINITION_ID_RULE)
    return await instances.start_process(
        store,
        models,
        call,
        definition_id or SHIPPED_DEFINITION_ID,
        initial,
        limits,
        now=now,
        audit_as=WORKFLOW_RUN,
    )


def install_call() -> CallContext:
    """The call context of the server's own install (the audit entry's actor)."""
    return CallContext(
        method=INSTALL_METHOD,
        trace_id="",
        actor="server",
        authenticated=True,
        operator_reason="shipped process definition stored at server start",
    )


async def install_shipped(store: OrchestraStore, spec: DefinitionSpec, *, now: datetime) -> str:
    """Store the shipped `spec` unless its version or a newer one is stored; what was
    done: "stored", "present" (that version or a newer one is stored) or "scoped"
    (a definition of that id belongs to one tenant: left alone)."""
    latest = await store.orchestra.definition(spec.id, None)
    if latest is not None and latest.tenant_id is not None:
        return "scoped"
    if latest is not None and latest.version >= spec.version:
        return "present"
    stored = await put_definition(store, install_call(), spec, now=now)
    return "stored" if stored.created else "present"

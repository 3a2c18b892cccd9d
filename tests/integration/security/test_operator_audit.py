"""Every operator-audited method writes exactly one audit entry per successful call
(issue 7 §4), generated from the descriptors like the other security tests.

The methods are every method of `server.app.SERVICES` whose policy says
`OPERATOR_AUDIT_REQUIRED`, each called over gRPC and over every HTTP binding the
gateway serves for it. A successful call needs real arguments, so each audited
method has a `Recipe` (what to create first, the request, the entry it must write);
`test_every_audited_method_has_a_recipe` fails for a method added without one, so
no audited method goes untested by omission.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from google.rpc import code_pb2

from orchestrator.api.v1 import options_pb2
from server.interceptors.audit import REASON_HEADER, TICKET_HEADER
from server.interceptors.tenancy import TENANT_HEADER
from server.interceptors.tracing import TRACE_HEADER
from server.storage.tables import AuditEntryRow, DeadLetterEntryRow, table_of
from tests.integration.security import forge
from tests.integration.security.conftest import Security
from tests.integration.security.surface import (
    ALL_POLICIES,
    SURFACE,
    Outcome,
    SecuredMethod,
    Target,
    call,
    secured,
)

SOURCES = "/orchestrator.jobengine.v1.SourcesService"
QUOTAS = "/orchestrator.jobengine.v1.QuotasService"
AUDITED = tuple(method for method in SURFACE if method.policy.operator_audit)
_entries = table_of(AuditEntryRow)


@dataclass(frozen=True, slots=True)
class Call:
    """One successful call of a method: gRPC request fields (also the REST path
    variables), the REST body, and how to name the resource it changes."""

    fields: dict[str, Any]
    body: Any
    resource: Callable[[Outcome], str]


@dataclass(frozen=True, slots=True)
class Recipe:
    action: str
    prepare: Callable[[Security], Awaitable[Call]]


def _created_source(outcome: Outcome) -> str:
    if outcome.transport == "rest":
        return f"sources/{outcome.body['sourceId']}"
    return f"sources/{outcome.body.source.source_id}"


async def _register(security: Security) -> Call:
    name = f"audited-{uuid.uuid4().hex[:10]}"
    return Call(
        fields={"name": name, "source_type": "manual"},
        body={"name": name, "sourceType": "manual"},
        resource=_created_source,
    )


async def _existing_source(security: Security) -> Call:
    """A source of tenant A, registered over gRPC first."""
    register = secured(f"{SOURCES}/RegisterSource")
    prepared = await _register(security)
    headers = [
        *security.context_headers(register),
        ("Authorization", f"Bearer {await security.method_token(register)}"),
    ]
    target = Target(register, None).with_payload(fields=prepared.fields)
    outcome = await call(target, headers, channel=security.channel, http=security.http)
    assert outcome.code == code_pb2.OK, outcome
    resource = _created_source(outcome)
    source_id = resource.removeprefix("sources/")
    return Call(fields={"source_id": source_id}, body=None, resource=lambda _: resource)


def _created_quota(outcome: Outcome) -> str:
    if outcome.transport == "rest":
        return f"quotas/{outcome.body['quotaId']}"
    return f"quotas/{outcome.body.quota.quota_id}"


async def _create_quota(security: Security) -> Call:
    job_type = f"audited-{uuid.uuid4().hex[:10]}"
    return Call(
        fields={"quota": {"job_type": job_type, "burst": 1}},
        body={"jobType": job_type, "burst": 1},
        resource=_created_quota,
    )


async def _existing_quota_id(security: Security) -> str:
    """A quota of tenant A, created over gRPC first."""
    create = secured(f"{QUOTAS}/CreateQuota")
    prepared = await _create_quota(security)
    headers = [
        *security.context_headers(create),
        ("Authorization", f"Bearer {await security.method_token(create)}"),
    ]
    target = Target(create, None).with_payload(fields=prepared.fields)
    outcome = await call(target, headers, channel=security.channel, http=security.http)
    assert outcome.code == code_pb2.OK, outcome
    return _created_quota(outcome).removeprefix("quotas/")


async def _existing_quota(security: Security) -> Call:
    quota_id = await _existing_quota_id(security)
    return Call(fields={"quota_id": quota_id}, body=None, resource=lambda _: f"quotas/{quota_id}")


async def _quota_update(security: Security) -> Call:
    quota_id = await _existing_quota_id(security)
    return Call(
        fields={"quota": {"quota_id": quota_id, "burst": 2}},
        body={"burst": 2},
        resource=lambda _: f"quotas/{quota_id}",
    )


JOBS = "/orchestrator.jobengine.v1.JobsService"


async def _call_grpc(security: Security, full_method: str, fields: dict[str, Any]) -> Outcome:
    """Call `full_method` of tenant A over gRPC with `fields`; it must succeed."""
    method = secured(full_method)
    headers = [
        *security.context_headers(method),
        ("Authorization", f"Bearer {await security.method_token(method)}"),
    ]
    target = Target(method, None).with_payload(fields=fields)
    outcome = await call(target, headers, channel=security.channel, http=security.http)
    assert outcome.code == code_pb2.OK, outcome
    return outcome


def _answered_job(outcome: Outcome) -> str:
    """The job a call answered: the REST body is the job itself (response_body)."""
    if outcome.transport == "rest":
        return f"jobs/{outcome.body['jobId']}"
    return f"jobs/{outcome.body.job.job_id}"


async def _job_to_enqueue(security: Security) -> Call:
    source = (await _existing_source(security)).fields["source_id"]
    job = {"job_type": "audited", "source_id": source}
    return Call(
        fields={"job": job},
        body={"jobType": "audited", "sourceId": source},
        resource=_answered_job,
    )


async def _jobs_to_enqueue(security: Security) -> Call:
    source = (await _existing_source(security)).fields["source_id"]
    return Call(
        fields={"jobs": [{"job_type": "audited", "source_id": source}] * 2},
        body={"jobs": [{"jobType": "audited", "sourceId": source}] * 2},
        resource=lambda _: "jobs/-",  # one entry for the batch (server/domain/jobs.py)
    )


async def _queued_job(security: Security) -> str:
    prepared = await _job_to_enqueue(security)
    outcome = await _call_grpc(security, f"{JOBS}/EnqueueJob", prepared.fields)
    return str(outcome.body.job.job_id)


async def _job_to_cancel(security: Security) -> Call:
    job_id = await _queued_job(security)
    return Call(fields={"job_id": job_id}, body=None, resource=lambda _: f"jobs/{job_id}")


async def _job_to_replay(security: Security) -> Call:
    """A canceled job (finished); the entry names the new job, the replay."""
    job_id = await _queued_job(security)
    await _call_grpc(security, f"{JOBS}/CancelJob", {"job_id": job_id})
    return Call(fields={"job_id": job_id}, body=None, resource=_answered_job)


BACKFILLS = "/orchestrator.jobengine.v1.BackfillsService"


def _backfill_window() -> tuple[dict[str, Any], dict[str, Any]]:
    """A past one-hour event-time window (issue 10): gRPC fields and REST body."""
    start = (int(time.time()) // 3600 - 3) * 3600
    fields = {"window_start": {"seconds": start}, "window_end": {"seconds": start + 3600}}
    body = {
        "windowStart": datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "windowEnd": datetime.fromtimestamp(start + 3600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return fields, body


def _created_backfill(outcome: Outcome) -> str:
    if outcome.transport == "rest":
        return f"backfills/{outcome.body['backfillId']}"
    return f"backfills/{outcome.body.backfill.backfill_id}"


async def _backfill_to_create(security: Security) -> Call:
    """A job-type backfill of its own scope (a fresh job type: never a duplicate)."""
    job_type = f"audited-{uuid.uuid4().hex[:10]}"
    fields, body = _backfill_window()
    return Call(
        fields={"job_type": job_type, **fields},
        body={"jobType": job_type, **body},
        resource=_created_backfill,
    )


async def _backfill_to_cancel(security: Security) -> Call:
    prepared = await _backfill_to_create(security)
    outcome = await _call_grpc(security, f"{BACKFILLS}/CreateBackfill", prepared.fields)
    backfill_id = str(outcome.body.backfill.backfill_id)
    return Call(
        fields={"backfill_id": backfill_id},
        body=None,
        resource=lambda _: f"backfills/{backfill_id}",
    )


EVENTS = "/orchestrator.mesh.v1.EventsService"


async def _event_range(security: Security) -> Call:
    """Any id range: replay re-publishes what tenant A has in it (maybe nothing)."""
    return Call(
        fields={"from_event_id": "1", "to_event_id": "2"},
        body={"fromEventId": "1", "toEventId": "2"},
        resource=lambda _: "events/1-2",
    )


async def _events_to_clear(security: Security) -> Call:
    """A clear by a client bound to tenant A: its own events written before 2001."""
    return Call(
        fields={"older_than": {"seconds": 978_307_200}},
        body={"olderThan": "2001-01-01T00:00:00Z"},
        resource=lambda _: f"events/{security.tenant_a}",
    )


ORCHESTRA_DEFINITIONS = "/orchestrator.orchestra.v1.DefinitionsService"


async def _definition_to_put(security: Security) -> Call:
    """Version 1 of a new process definition (issue 11): start -> end."""
    definition_id = f"audited_{uuid.uuid4().hex[:10]}"
    nodes = [{"id": "start", "type": "start"}, {"id": "done", "type": "end"}]
    return Call(
        fields={
            "definition_id": definition_id,
            "definition": {"nodes": nodes, "flows": [{"from_node": "start", "to_node": "done"}]},
        },
        body={"nodes": nodes, "flows": [{"from": "start", "to": "done"}]},
        resource=lambda _: f"orchestra-definitions/{definition_id}/versions/1",
    )


PACK_RUNS = "/orchestrator.jobengine.v1.PackRunsService"


def _created_pack_run(outcome: Outcome) -> str:
    """The run CreatePackRun answered: the REST body is the run itself (response_body)."""
    if outcome.transport == "rest":
        return f"packRuns/{outcome.body['packRunId']}"
    return f"packRuns/{outcome.body.pack_run.pack_run_id}"


async def _pack_run_to_create(security: Security) -> Call:
    """A two-job pack (b after a) of a fresh source of tenant A (issue 10)."""
    source = (await _existing_source(security)).fields["source_id"]
    a = {"name": "a", "job_type": "audited", "source_id": source}
    b = {**a, "name": "b", "depends_on": ["a"]}
    rest = [
        {"name": "a", "jobType": "audited", "sourceId": source},
        {"name": "b", "jobType": "audited", "sourceId": source, "dependsOn": ["a"]},
    ]
    return Call(
        fields={"pack_run": {"pack_name": "audited", "jobs": [a, b]}},
        body={"packName": "audited", "jobs": rest},
        resource=_created_pack_run,
    )


async def _running_pack_run(security: Security) -> Call:
    prepared = await _pack_run_to_create(security)
    outcome = await _call_grpc(security, f"{PACK_RUNS}/CreatePackRun", prepared.fields)
    resource = _created_pack_run(outcome)
    pack_run_id = resource.removeprefix("packRuns/")
    return Call(fields={"pack_run_id": pack_run_id}, body=None, resource=lambda _: resource)


async def _canceled_pack_run(security: Security) -> Call:
    """A canceled run: retrying it audits the retried run (its retriedBy changes)."""
    prepared = await _running_pack_run(security)
    await _call_grpc(security, f"{PACK_RUNS}/CancelPackRun", prepared.fields)
    return prepared


WORKERS = "/orchestrator.jobengine.v1.WorkerService"
DEAD_LETTERS = "/orchestrator.jobengine.v1.DeadLetterService"


async def _dead_letter(security: Security) -> tuple[str, str]:
    """A job of tenant A of a job type of its own, failed for good by a worker over
    gRPC: (its job type, its dead-letter entry id)."""
    job_type = f"audited-{uuid.uuid4().hex[:10]}"
    source = (await _existing_source(security)).fields["source_id"]
    job = {"job_type": job_type, "source_id": source, "max_attempts": 1}
    await _call_grpc(security, f"{JOBS}/EnqueueJob", {"job": job})
    lease = {"worker_id": "w-audit", "job_types": [job_type], "max_jobs": 1}
    leased = await _call_grpc(security, f"{WORKERS}/LeaseJobs", lease)
    [held] = leased.body.leases
    token = {"job_id": held.token.job_id, "lease_id": held.token.lease_id}
    token["attempt"] = held.token.attempt
    failure = {"token": token, "category": "timeout", "code": "T", "retryable": False}
    await _call_grpc(security, f"{WORKERS}/FailJobs", {"worker_id": "w", "failures": [failure]})
    entries = table_of(DeadLetterEntryRow)
    async with security.app.db.read() as conn:
        statement = sa.select(entries.c.entry_id).where(entries.c.job_id == held.token.job_id)
        entry_id = str((await conn.execute(statement)).scalar_one())
    return job_type, entry_id


async def _entry_to_replay(security: Security) -> Call:
    _, entry_id = await _dead_letter(security)
    return Call(
        fields={"entry_id": entry_id},
        body=None,
        resource=lambda _: f"deadLetterEntries/{entry_id}",
    )


async def _entries_to_replay(security: Security) -> Call:
    _, entry_id = await _dead_letter(security)
    return Call(
        fields={"entry_ids": [entry_id]},
        body={"entryIds": [entry_id]},
        resource=lambda _: "deadLetterEntries/-",  # one entry per call, listing the ids
    )


async def _pending_to_replay(security: Security) -> Call:
    job_type, _ = await _dead_letter(security)
    return Call(
        fields={"job_type": job_type},
        body={"jobType": job_type},
        resource=lambda _: "deadLetterEntries/-",
    )


REGISTRY = "/orchestrator.mesh.v1.RegistryService"


def _service_name() -> str:
    return f"audited-{uuid.uuid4().hex[:10]}"


async def _register_service(security: Security) -> Call:
    name = _service_name()
    return Call(
        fields={"name": name, "base_url": "http://127.0.0.1:9"},
        body={"name": name, "baseUrl": "http://127.0.0.1:9"},
        resource=lambda _: f"services/{name}",
    )


async def _service_to_poll(security: Security) -> Call:
    """A registered service whose document is unreachable (port 9, refused at once):
    the poll succeeds and reports the failure for that service only."""
    prepared = await _register_service(security)
    await _call_grpc(security, f"{REGISTRY}/RegisterService", prepared.fields)
    name = prepared.fields["name"]
    return Call(fields={"names": [name]}, body={"names": [name]}, resource=lambda _: "registry/-")


async def _sync(security: Security) -> Call:
    return Call(fields={}, body={}, resource=lambda _: "registry/-")


async def _replicated(security: Security) -> Call:
    name = _service_name()
    when = {"seconds": 1_790_000_000}
    entry = {
        "name": name,
        "base_url": "http://127.0.0.1:9",
        "openapi_url": "http://127.0.0.1:9/openapi.json",
        "revision": 1,
        "origin": "peer-audit",
        "created_at": when,
        "updated_at": when,
    }
    body = {
        "origin": "peer-audit",
        "services": [
            {
                "name": name,
                "baseUrl": "http://127.0.0.1:9",
                "openapiUrl": "http://127.0.0.1:9/openapi.json",
                "revision": "1",
                "origin": "peer-audit",
                "createdAt": "2026-09-21T13:46:40Z",
                "updatedAt": "2026-09-21T13:46:40Z",
            }
        ],
    }
    fields = {"origin": "peer-audit", "services": [entry]}
    return Call(fields=fields, body=body, resource=lambda _: "registry/-")


WORKFLOWS = "/orchestrator.mesh.v1.WorkflowsService"


def _ingested_job(outcome: Outcome) -> str:
    if outcome.transport == "rest":
        return f"jobs/{outcome.body['job_id']}"
    return f"jobs/{outcome.body.job_id}"


async def _ingestion(security: Security) -> Call:
    """An ingestion from GitHub (issue 13): a job in tenant A's built-in mesh source."""
    return Call(fields={"source": "github"}, body={"source": "github"}, resource=_ingested_job)


def _started_run(outcome: Outcome) -> str:
    run_id = outcome.body["runId"] if outcome.transport == "rest" else outcome.body.run_id
    return f"workflows/multi_source_ingestion/runs/{run_id}"


async def _workflow_run(security: Security) -> Call:
    """A run of the shipped multi-source ingestion workflow (issue 13)."""
    return Call(fields={}, body={}, resource=_started_run)


UPSTREAMS = "/orchestrator.mesh.v1.UpstreamProxyService"


async def _document_to_save(security: Security) -> Call:
    """Saved in the session's stub doc store, which answers no id: "documents/-"."""
    document = {"title": "audited", "n": 1}
    return Call(fields={"document": document}, body=document, resource=lambda _: "documents/-")


CROSS_SERVICE_JOBS = "/orchestrator.mesh.v1.CrossServiceJobsService"


def _accepted_job(outcome: Outcome) -> str:
    """The job a cross-service call enqueued (issue 13): its answer's job_id."""
    if outcome.transport == "rest":
        return f"jobs/{outcome.body['job_id']}"
    return f"jobs/{outcome.body.job_id}"


async def _quality_recalc(security: Security) -> Call:
    body = {"scope": "audited", "document_ids": ["d-1"]}
    return Call(fields=body, body=body, resource=_accepted_job)


async def _consolidation_notice(security: Security) -> Call:
    body = {"scope": "audited", "message": "merged", "channels": ["email"]}
    return Call(fields=body, body=body, resource=_accepted_job)


RECIPES: dict[str, Recipe] = {
    f"{CROSS_SERVICE_JOBS}/RecalcQuality": Recipe("jobs.recalc_quality", _quality_recalc),
    f"{CROSS_SERVICE_JOBS}/NotifyConsolidation": Recipe(
        "jobs.notify_consolidation", _consolidation_notice
    ),
    f"{UPSTREAMS}/SaveDocument": Recipe("documents.save", _document_to_save),
    f"{WORKFLOWS}/Ingest": Recipe("jobs.ingest", _ingestion),
    f"{WORKFLOWS}/RunWorkflow": Recipe("workflows.run", _workflow_run),
    f"{REGISTRY}/RegisterService": Recipe("services.register", _register_service),
    f"{REGISTRY}/PollOpenApi": Recipe("registry.poll_open_api", _service_to_poll),
    f"{REGISTRY}/SyncPeers": Recipe("registry.sync_peers", _sync),
    f"{REGISTRY}/ReplicateServices": Recipe("registry.replicate_services", _replicated),
    f"{DEAD_LETTERS}/ReplayDeadLetterEntry": Recipe("deadLetterEntries.replay", _entry_to_replay),
    f"{DEAD_LETTERS}/BatchReplayDeadLetterEntries": Recipe(
        "deadLetterEntries.batch_replay", _entries_to_replay
    ),
    f"{DEAD_LETTERS}/ReplayPendingDeadLetterEntries": Recipe(
        "deadLetterEntries.replay_pending", _pending_to_replay
    ),
    f"{PACK_RUNS}/CreatePackRun": Recipe("packRuns.create", _pack_run_to_create),
    f"{PACK_RUNS}/CancelPackRun": Recipe("packRuns.cancel", _running_pack_run),
    f"{PACK_RUNS}/RetryPackRun": Recipe("packRuns.retry", _canceled_pack_run),
    f"{ORCHESTRA_DEFINITIONS}/PutDefinition": Recipe(
        "orchestra-definitions.put_definition", _definition_to_put
    ),
    f"{EVENTS}/ReplayEvents": Recipe("events.replay", _event_range),
    f"{EVENTS}/ClearEvents": Recipe("events.clear", _events_to_clear),
    f"{BACKFILLS}/CreateBackfill": Recipe("backfills.create", _backfill_to_create),
    f"{BACKFILLS}/CancelBackfill": Recipe("backfills.cancel", _backfill_to_cancel),
    f"{SOURCES}/RegisterSource": Recipe("sources.register", _register),
    f"{SOURCES}/PauseSource": Recipe("sources.pause", _existing_source),
    f"{SOURCES}/ResumeSource": Recipe("sources.resume", _existing_source),
    f"{JOBS}/EnqueueJob": Recipe("jobs.enqueue", _job_to_enqueue),
    f"{JOBS}/BatchEnqueueJobs": Recipe("jobs.batch_enqueue", _jobs_to_enqueue),
    f"{JOBS}/CancelJob": Recipe("jobs.cancel", _job_to_cancel),
    f"{JOBS}/ReplayJob": Recipe("jobs.replay", _job_to_replay),
    f"{QUOTAS}/CreateQuota": Recipe("quotas.create", _create_quota),
    f"{QUOTAS}/UpdateQuota": Recipe("quotas.update", _quota_update),
    f"{QUOTAS}/DeleteQuota": Recipe("quotas.delete", _existing_quota),
    f"{QUOTAS}/PauseQuota": Recipe("quotas.pause", _existing_quota),
    f"{QUOTAS}/ResumeQuota": Recipe("quotas.resume", _existing_quota),
}


def test_every_audited_method_has_a_recipe() -> None:
    audited = {path for path, policy in ALL_POLICIES.items() if policy.operator_audit}
    assert audited == set(RECIPES)
    assert {method.full_method for method in AUDITED} == audited  # all need a token


def _entry_tenant(security: Security, method: SecuredMethod) -> str | None:
    """The tenant an entry records: tenant A's for tenant-scoped methods, none for
    platform-level ones (TENANT_MODE_NONE, e.g. the service registry)."""
    header_mode = method.policy.tenant_mode == options_pb2.TENANT_MODE_HEADER
    return security.tenant_a if header_mode else None


async def _tenant_entries(security: Security, tenant: str | None) -> int:
    column = _entries.c.tenant_id
    async with security.app.db.read() as conn:
        where = column.is_(None) if tenant is None else column == tenant
        query = sa.select(sa.func.count()).where(where)
        return int((await conn.execute(query.select_from(_entries))).scalar_one())


@pytest.mark.parametrize("target", [t for m in AUDITED for t in m.targets], ids=lambda t: t.label)
async def test_one_successful_call_writes_exactly_one_entry(
    security: Security, target: Target
) -> None:
    method = target.method
    recipe = RECIPES[method.full_method]
    prepared = await recipe.prepare(security)
    token = await security.method_token(method)
    trace_id = f"audit-{uuid.uuid4().hex}"
    reason = f"audit test of {target.label}"
    headers = [
        (TENANT_HEADER, security.tenant_a),
        (REASON_HEADER, reason),
        (TICKET_HEADER, "OPS-7"),
        (TRACE_HEADER, trace_id),
        ("Authorization", f"Bearer {token}"),
    ]
    tenant = _entry_tenant(security, method)
    before = await _tenant_entries(security, tenant)
    concrete = target.with_payload(fields=prepared.fields, body=prepared.body)
    outcome = await call(concrete, headers, channel=security.channel, http=security.http)
    assert outcome.code == code_pb2.OK, outcome

    if tenant is not None:  # platform entries may come from other tests running alongside
        assert await _tenant_entries(security, tenant) == before + 1
    async with security.app.db.read() as conn:
        rows = (
            await conn.execute(sa.select(_entries).where(_entries.c.trace_id == trace_id))
        ).all()
    assert len(rows) == 1
    [row] = rows
    assert row.tenant_id == tenant
    assert row.action == recipe.action
    assert row.resource == prepared.resource(outcome)
    assert row.actor == forge.claims_of(token)["client_id"]
    assert (row.reason, row.ticket) == (reason, "OPS-7")
    assert row.token_id == forge.claims_of(token)["jti"]

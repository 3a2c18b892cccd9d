"""The mesh API's ingestion and workflows (issue 13 point 1; seed 002 `/ingest`,
`/workflows*`) against the session's real server, on a SQLite file and PostgreSQL:
exact bodies, stored jobs, audit entries and events, bad input, history pagination,
trace ids, and runs of the shipped workflow driven to their end by a worker leasing
over gRPC (in the test's process here; test_ingest_worker.py runs the example as a
subprocess).
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime
from typing import Any

import grpc
import httpx
import pytest
import sqlalchemy as sa
from google.protobuf import duration_pb2, json_format

from orchestrator.jobengine.v1 import worker_service_pb2 as wpb
from orchestrator.jobengine.v1 import worker_service_pb2_grpc as wpb_grpc
from orchestrator.mesh.v1 import workflows_service_pb2 as pb
from orchestrator.mesh.v1 import workflows_service_pb2_grpc as pb_grpc
from server.app import Application
from server.domain.builtin_sources import mesh_source_id
from server.domain.context import CallContext
from server.domain.orchestra.definitions import put_definition
from server.domain.orchestra.model import spec_from_document
from server.interceptors.audit import REASON_HEADER
from server.interceptors.tracing import TRACE_HEADER
from server.services.orchestra import orchestra_store
from server.shipped_definitions import install_shipped_definitions, shipped_specs
from server.storage.tables import (
    AuditEntryRow,
    EventRow,
    JobRow,
    OrchestraInstanceRow,
    SourceRow,
    table_of,
)
from tests.support.auth import TokenFactory, ensure_tenant

INGEST = "/ingest"
WORKFLOWS = "/workflows"
RUN = "/workflows/run"
HISTORY = "/workflows/history"
READ = ("orch:read",)
OPERATE = ("orch:read", "orch:operate")
SHIPPED = "multi_source_ingestion"
SHIPPED_TYPES = [
    "analysis.consistency",
    "ingest.confluence",
    "ingest.github",
    "ingest.jira",
    "ingest.swagger",
]
KNOWN = "github, jira, confluence, swagger"
W3C_ID = re.compile(r"^[0-9a-f]{32}$")
_jobs = table_of(JobRow)
_audit = table_of(AuditEntryRow)
_events = table_of(EventRow)
_sources = table_of(SourceRow)
_instances = table_of(OrchestraInstanceRow)


async def operator(tokens: TokenFactory, tenant: str, **extra: str) -> dict[str, str]:
    headers = await tokens.headers(tenant, OPERATE)
    return {**headers, REASON_HEADER: "issue 13 tests", **extra}


def violations(response: httpx.Response) -> list[tuple[str, str]]:
    body = response.json()
    assert set(body) == {"error", "code", "details"}, body
    return [
        (v["field"], v["description"])
        for d in body["details"]
        if d["@type"].endswith("BadRequest")
        for v in d["fieldViolations"]
    ]


def rfc3339(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    text = value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return text


async def rows(app: Application, statement: sa.Select[Any]) -> list[Any]:
    async with app.db.read() as conn:
        return list((await conn.execute(statement)).all())


# --- POST /ingest ------------------------------------------------------------------------


async def test_ingest_enqueues_an_ingest_job_in_the_tenants_mesh_source(
    app: Application, http: httpx.AsyncClient, tokens: TokenFactory, tenant: str
) -> None:
    headers = await operator(tokens, tenant, **{TRACE_HEADER: "trace-ingest-1"})
    body = {"source": "github", "scope": "org/repo", "correlation_id": "corr-1"}

    response = await http.post(INGEST, json=body, headers=headers)

    assert response.status_code == 202, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.headers[TRACE_HEADER] == "trace-ingest-1"
    answer = response.json()
    job_id = answer["job_id"]
    assert answer == {
        "job_id": job_id,
        "job_type": "ingest.github",
        "status": "queued",
        "source": "github",
        "scope": "org/repo",
        "correlation_id": "corr-1",
        "trace_id": "trace-ingest-1",
    }
    [job] = await rows(app, sa.select(_jobs).where(_jobs.c.job_id == job_id))
    assert (job.tenant_id, job.job_type, job.status) == (tenant, "ingest.github", "queued")
    assert job.source_id == mesh_source_id(tenant, None)
    assert json.loads(job.payload) == {**body, "trace_id": "trace-ingest-1"}
    [source] = await rows(app, sa.select(_sources).where(_sources.c.tenant_id == tenant))
    assert (source.source_id, source.name, source.source_type) == (job.source_id, "mesh", "mesh")
    [entry] = await rows(app, sa.select(_audit).where(_audit.c.tenant_id == tenant))
    assert (entry.action, entry.resource, entry.reason, entry.trace_id) == (
        "jobs.ingest",
        f"jobs/{job_id}",
        "issue 13 tests",
        "trace-ingest-1",
    )
    events = await rows(app, sa.select(_events).where(_events.c.tenant_id == tenant))
    assert [(e.type, e.subject, e.trace_id) for e in events] == [
        ("job.enqueued", f"jobs/{job_id}", "trace-ingest-1")
    ]


@pytest.mark.parametrize("source", ["jira", "confluence", "swagger"])
async def test_every_known_source_has_its_job_type_and_scope_and_correlation_are_optional(
    http: httpx.AsyncClient, tokens: TokenFactory, tenant: str, source: str
) -> None:
    response = await http.post(
        INGEST, json={"source": source}, headers=await operator(tokens, tenant)
    )
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["job_type"] == f"ingest.{source}"
    assert (answer["scope"], answer["correlation_id"]) == ("", "")
    second = await http.post(
        INGEST, json={"source": source}, headers=await operator(tokens, tenant)
    )
    assert second.json()["job_id"] != answer["job_id"]  # each request is its own job


async def test_ingest_answers_the_trace_id_of_a_traceparent_or_a_new_w3c_one(
    http: httpx.AsyncClient, tokens: TokenFactory, tenant: str
) -> None:
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent = f"00-{trace}-00f067aa0ba902b7-01"
    headers = await operator(tokens, tenant, traceparent=parent)
    response = await http.post(INGEST, json={"source": "jira"}, headers=headers)
    assert response.status_code == 202, response.text
    assert response.json()["trace_id"] == trace
    assert response.headers[TRACE_HEADER] == trace

    fresh = await http.post(INGEST, json={"source": "jira"}, headers=await operator(tokens, tenant))
    assert fresh.status_code == 202, fresh.text
    assert W3C_ID.match(fresh.json()["trace_id"])
    assert fresh.json()["trace_id"] != trace
    assert fresh.headers[TRACE_HEADER] == fresh.json()["trace_id"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"source": "gitlab"}, [("source", f"unknown source 'gitlab': must be one of {KNOWN}")]),
        ({"source": "GitHub"}, [("source", f"unknown source 'GitHub': must be one of {KNOWN}")]),
        ({}, [("source", f"is required: one of {KNOWN}")]),
        ({"scope": "x"}, [("source", f"is required: one of {KNOWN}")]),
        (
            {"source": "github", "scope": "s" * 1001, "correlation_id": "a\nb"},
            [
                ("scope", "must be at most 1000 characters, got 1001"),
                ("correlation_id", "must not contain control characters"),
            ],
        ),
        (
            {"source": "svn", "correlation_id": "c" * 201},
            [
                ("source", f"unknown source 'svn': must be one of {KNOWN}"),
                ("correlation_id", "must be at most 200 characters, got 201"),
            ],
        ),
    ],
)
async def test_bad_ingest_requests_are_400_naming_the_field_and_write_nothing(
    app: Application,
    http: httpx.AsyncClient,
    tokens: TokenFactory,
    tenant: str,
    body: dict[str, Any],
    expected: list[tuple[str, str]],
) -> None:
    response = await http.post(INGEST, json=body, headers=await operator(tokens, tenant))
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "INVALID_ARGUMENT"
    assert violations(response) == expected
    for table in (_jobs, _sources, _audit, _events):
        assert await rows(app, sa.select(table).where(table.c.tenant_id == tenant)) == []


async def test_ingest_with_a_paused_mesh_source_is_409_and_enqueues_nothing(
    app: Application, http: httpx.AsyncClient, tokens: TokenFactory, tenant: str
) -> None:
    headers = await operator(tokens, tenant)
    first = await http.post(INGEST, json={"source": "github"}, headers=headers)
    assert first.status_code == 202, first.text
    source_id = mesh_source_id(tenant, None)
    paused = await http.post(f"/jobengine/sources/{source_id}/pause", headers=headers)
    assert paused.status_code == 200, paused.text

    refused = await http.post(INGEST, json={"source": "github"}, headers=headers)
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "FAILED_PRECONDITION"
    jobs = await rows(app, sa.select(_jobs.c.job_id).where(_jobs.c.tenant_id == tenant))
    assert [job.job_id for job in jobs] == [first.json()["job_id"]]


async def test_ingest_over_grpc_answers_the_same_fields(
    grpc_target: str, tokens: TokenFactory, tenant: str
) -> None:
    token = await tokens.token(tenant, OPERATE)
    metadata = (
        ("authorization", f"Bearer {token}"),
        ("x-stella-operator-reason", "grpc test"),
        (TRACE_HEADER, "trace-grpc-ingest"),
    )
    async with grpc.aio.insecure_channel(grpc_target) as channel:
        stub = pb_grpc.WorkflowsServiceStub(channel)
        answer = await stub.Ingest(
            pb.IngestRequest(source="swagger", scope="https://api/openapi.json"),
            metadata=metadata,
        )
        assert (answer.job_type, answer.status, answer.trace_id) == (
            "ingest.swagger",
            "queued",
            "trace-grpc-ingest",
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Ingest(pb.IngestRequest(source="ftp"), metadata=metadata)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert refused.value.details() == f"source: unknown source 'ftp': must be one of {KNOWN}"


# --- GET /workflows ----------------------------------------------------------------------


async def _put_scoped(app: Application, definition_id: str, tenant: str, versions: int) -> None:
    """`versions` versions of a start -> task -> end definition scoped to `tenant`
    (created first: a definition's tenant must exist)."""
    await ensure_tenant(app, tenant)
    call = CallContext(method="/tests/PutDefinition", trace_id="", actor="tests", tenant_id=None)
    for _ in range(versions):
        document = {
            "id": definition_id,
            "version": 0,
            "tenant": tenant,
            "nodes": [
                {"id": "start", "type": "start"},
                {"id": "work", "type": "service_task", "job_type": f"work.{_}"},
                {"id": "done", "type": "end"},
            ],
            "flows": [{"from": "start", "to": "work"}, {"from": "work", "to": "done"}],
        }
        await put_definition(
            orchestra_store(app.store), call, spec_from_document(document), now=datetime.now(UTC)
        )


async def test_workflows_lists_the_shipped_definition_and_the_tenants_own(
    app: Application, http: httpx.AsyncClient, tokens: TokenFactory, tenant: str
) -> None:
    own = f"zz_{tenant.replace('-', '_')}_own"
    other = f"zz_{tenant.replace('-', '_')}_other"
    await _put_scoped(app, own, tenant, versions=2)
    await _put_scoped(app, other, f"{tenant}-x", versions=1)
    headers = await tokens.headers(tenant, READ)

    response = await http.get(WORKFLOWS, params={"limit": 200}, headers=headers)

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "private, no-cache"
    assert response.headers["etag"].startswith('"')
    items = {item["definitionId"]: item for item in response.json()["items"]}
    assert other not in items
    shipped = items[SHIPPED]
    assert shipped == {
        "definitionId": SHIPPED,
        "latestVersion": shipped["latestVersion"],
        "versions": list(range(1, shipped["latestVersion"] + 1)),
        "shared": True,
        "jobTypes": SHIPPED_TYPES,
        "updatedAt": shipped["updatedAt"],
    }
    assert {
        key: items[own][key] for key in ("latestVersion", "versions", "shared", "jobTypes")
    } == {
        "latestVersion": 2,
        "versions": [1, 2],
        "shared": False,
        "jobTypes": ["work.1"],
    }
    ids = [item["definitionId"] for item in response.json()["items"]]
    assert ids == sorted(ids)


async def test_workflows_pages_with_a_continuation_token_bound_to_the_tenant(
    app: Application, http: httpx.AsyncClient, tokens: TokenFactory, tenant: str
) -> None:
    for name in ("a", "b"):
        await _put_scoped(app, f"zz_{tenant.replace('-', '_')}_{name}", tenant, versions=1)
    headers = await tokens.headers(tenant, READ)
    everything = await http.get(WORKFLOWS, params={"limit": 200}, headers=headers)
    expected = [item["definitionId"] for item in everything.json()["items"]]
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 1}
    while True:
        page = await http.get(WORKFLOWS, params=params, headers=headers)
        assert page.status_code == 200, page.text
        assert len(page.json()["items"]) <= 1
        seen += [item["definitionId"] for item in page.json()["items"]]
        token = page.json().get("continuationToken")
        if token is None or len(seen) >= len(expected):
            break
        params = {"limit": 1, "continuationToken": token}
    assert seen[: len(expected)] == expected

    other = await tokens.headers(f"{tenant}-b", READ)
    first = await http.get(WORKFLOWS, params={"limit": 1}, headers=headers)
    token = first.json()["continuationToken"]
    stolen = await http.get(WORKFLOWS, params={"continuationToken": token}, headers=other)
    assert stolen.status_code == 400
    assert [field for field, _ in violations(stolen)] == ["continuationToken"]


@pytest.mark.parametrize(
    ("params", "field"),
    [({"limit": -1}, "limit"), ({"continuationToken": "forged.token"}, "continuationToken")],
)
async def test_workflows_refuses_bad_limits_and_tokens(
    http: httpx.AsyncClient, tokens: TokenFactory, tenant: str, params: dict[str, Any], field: str
) -> None:
    response = await http.get(WORKFLOWS, params=params, headers=await tokens.headers(tenant, READ))
    assert response.status_code == 400, response.text
    assert [name for name, _ in violations(response)] == [field]


async def test_the_shipped_definition_is_installed_once_and_left_alone_when_present(
    app: Application,
) -> None:
    store = orchestra_store(app.store)
    [spec] = shipped_specs()
    assert spec.id == SHIPPED and spec.tenant is None
    assert await install_shipped_definitions(store, now=datetime.now(UTC)) == {SHIPPED: "present"}
    record = await store.orchestra.definition(SHIPPED, None)
    assert record is not None and record.tenant_id is None


# --- POST /workflows/run and GET /workflows/history ---------------------------------------


async def _run(
    http: httpx.AsyncClient, headers: dict[str, str], body: dict[str, Any] | None = None
) -> dict[str, Any]:
    response = await http.post(RUN, json=body or {}, headers=headers)
    assert response.status_code == 202, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def test_run_starts_the_shipped_workflow_with_four_parallel_ingest_jobs(
    app: Application, http: httpx.AsyncClient, tokens: TokenFactory, tenant: str
) -> None:
    headers = await operator(tokens, tenant, **{TRACE_HEADER: "trace-run-1"})
    response = await http.post(RUN, json={"variables": {"scope": "acme"}}, headers=headers)

    assert response.status_code == 202, response.text
    assert response.headers["cache-control"] == "no-store"
    run_id = response.json()["runId"]
    assert response.json() == {"runId": run_id, "traceId": "trace-run-1"}
    [instance] = await rows(app, sa.select(_instances).where(_instances.c.instance_id == run_id))
    assert (instance.tenant_id, instance.definition_id, instance.status) == (
        tenant,
        SHIPPED,
        "running",
    )
    jobs = await rows(app, sa.select(_jobs).where(_jobs.c.tenant_id == tenant))
    assert sorted(job.job_type for job in jobs) == [
        "ingest.confluence",
        "ingest.github",
        "ingest.jira",
        "ingest.swagger",
    ]
    assert {json.loads(job.payload)["scope"] for job in jobs} == {"acme"}
    enqueued = await rows(
        app,
        sa.select(_events).where(_events.c.tenant_id == tenant, _events.c.type == "job.enqueued"),
    )
    assert {event.trace_id for event in enqueued} == {"trace-run-1"}
    [entry] = await rows(app, sa.select(_audit).where(_audit.c.tenant_id == tenant))
    assert (entry.action, entry.resource, entry.trace_id) == (
        "workflows.run",
        f"workflows/{SHIPPED}/runs/{run_id}",
        "trace-run-1",
    )


async def test_run_answers_the_trace_id_of_a_traceparent_or_a_new_w3c_one(
    app: Application, http: httpx.AsyncClient, tokens: TokenFactory, tenant: str
) -> None:
    trace = "0af7651916cd43dd8448eb211c80319c"
    headers = await operator(tokens, tenant, traceparent=f"00-{trace}-b7ad6b7169203331-01")
    response = await http.post(RUN, json={}, headers=headers)
    assert response.status_code == 202, response.text
    assert response.json() == {"runId": response.json()["runId"], "traceId": trace}
    assert response.headers[TRACE_HEADER] == trace
    fresh = await _run(http, await operator(tokens, tenant))
    assert W3C_ID.match(fresh["traceId"]) and fresh["traceId"] != trace
    enqueued = await rows(
        app,
        sa.select(_events.c.trace_id).where(
            _events.c.tenant_id == tenant, _events.c.type == "job.enqueued"
        ),
    )
    assert sorted(event.trace_id for event in enqueued) == sorted(
        [trace] * 4 + [fresh["traceId"]] * 4
    )


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"definitionId": "no_such_workflow"}, 404, None),
        ({"variables": [1, 2]}, 400, "variables"),
        ({"variables": {"bad name": 1}}, 400, "variables.bad name"),
    ],
)
async def test_bad_runs_are_refused_and_start_nothing(
    app: Application,
    http: httpx.AsyncClient,
    tokens: TokenFactory,
    tenant: str,
    body: dict[str, Any],
    status: int,
    field: str | None,
) -> None:
    response = await http.post(RUN, json=body, headers=await operator(tokens, tenant))
    assert response.status_code == status, response.text
    if field is not None:
        assert [name for name, _ in violations(response)] == [field]
    else:
        assert response.json()["code"] == "NOT_FOUND"
    for table in (_instances, _jobs, _audit):
        assert await rows(app, sa.select(table).where(table.c.tenant_id == tenant)) == []


async def test_history_lists_runs_newest_first_with_pages_and_filters(
    app: Application, http: httpx.AsyncClient, tokens: TokenFactory, tenant: str
) -> None:
    headers = await operator(tokens, tenant)
    run_ids = [(await _run(http, headers))["runId"] for _ in range(3)]
    stored = {
        row.instance_id: row
        for row in await rows(app, sa.select(_instances).where(_instances.c.tenant_id == tenant))
    }
    newest_first = sorted(run_ids, key=lambda i: (stored[i].created_at, i), reverse=True)
    read = await tokens.headers(tenant, READ)

    first = await http.get(HISTORY, params={"limit": 2}, headers=read)
    assert first.status_code == 200, first.text
    assert first.headers["cache-control"] == "no-store"
    body = first.json()
    assert [item["runId"] for item in body["items"]] == newest_first[:2]
    assert body["items"][0] == {
        "runId": newest_first[0],
        "definitionId": SHIPPED,
        "definitionVersion": stored[newest_first[0]].definition_version,
        "status": "running",
        "startedAt": rfc3339(stored[newest_first[0]].created_at),
    }
    second = await http.get(
        HISTORY, params={"limit": 2, "continuationToken": body["continuationToken"]}, headers=read
    )
    assert second.status_code == 200, second.text
    assert [item["runId"] for item in second.json()["items"]] == newest_first[2:]
    assert "continuationToken" not in second.json()

    filtered = await http.get(
        HISTORY, params={"status": "running", "definitionId": SHIPPED}, headers=read
    )
    assert [item["runId"] for item in filtered.json()["items"]] == newest_first
    none = await http.get(HISTORY, params={"status": "completed"}, headers=read)
    assert none.json() == {"items": []}
    mismatched = await http.get(
        HISTORY,
        params={"status": "running", "continuationToken": body["continuationToken"]},
        headers=read,
    )
    assert mismatched.status_code == 400
    assert [field for field, _ in violations(mismatched)] == ["continuationToken"]
    other = await http.get(HISTORY, headers=await tokens.headers(f"{tenant}-b", READ))
    assert other.json() == {"items": []}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": -1}, "limit"),
        ({"status": "done"}, "status"),
        ({"definitionId": "9bad"}, "definitionId"),
        ({"continuationToken": "forged.token"}, "continuationToken"),
    ],
)
async def test_history_refuses_bad_filters_limits_and_tokens(
    http: httpx.AsyncClient, tokens: TokenFactory, tenant: str, params: dict[str, Any], field: str
) -> None:
    response = await http.get(HISTORY, params=params, headers=await tokens.headers(tenant, READ))
    assert response.status_code == 400, response.text
    assert [name for name, _ in violations(response)] == [field]


async def _work_until_idle(
    grpc_target: str, token: str, job_types: list[str], want: int
) -> list[tuple[str, dict[str, Any]]]:
    """Lease and complete `want` jobs of `job_types` over gRPC as examples/ingest_worker.py
    would answer them; the (job type, payload) of each, in completion order."""
    done: list[tuple[str, dict[str, Any]]] = []
    metadata = (("authorization", f"Bearer {token}"),)
    async with grpc.aio.insecure_channel(grpc_target) as channel:
        stub = wpb_grpc.WorkerServiceStub(channel)
        deadline = asyncio.get_running_loop().time() + 30
        while len(done) < want:
            assert asyncio.get_running_loop().time() < deadline, done
            leased = await stub.LeaseJobs(
                wpb.LeaseJobsRequest(
                    worker_id="w-test",
                    job_types=job_types,
                    max_jobs=10,
                    wait_timeout=duration_pb2.Duration(seconds=1),
                ),
                metadata=metadata,
            )
            for lease in leased.leases:
                payload = json_format.MessageToDict(lease.job)["payload"]
                job_type = lease.job.job_type
                source = job_type.removeprefix("ingest.")
                result = (
                    {f"ingest_{source}": {"documents": 10}}
                    if job_type.startswith("ingest.")
                    else {"analysis": {"documents": 40}}
                )
                completion = wpb.JobCompletion(token=lease.token)
                completion.result.struct_value.update(result)
                await stub.CompleteJobs(
                    wpb.CompleteJobsRequest(worker_id="w-test", completions=[completion]),
                    metadata=metadata,
                )
                done.append((job_type, payload))
    return done


async def test_a_run_completes_when_workers_finish_its_jobs_and_history_shows_its_duration(
    app: Application,
    http: httpx.AsyncClient,
    tokens: TokenFactory,
    tenant: str,
    grpc_target: str,
) -> None:
    run_id = (await _run(http, await operator(tokens, tenant)))["runId"]
    token = await tokens.token(tenant, OPERATE)
    done = await _work_until_idle(grpc_target, token, SHIPPED_TYPES, want=5)
    assert sorted(job_type for job_type, _ in done[:4]) == SHIPPED_TYPES[1:]
    analysis_type, analysis_payload = done[4]
    assert analysis_type == "analysis.consistency"
    assert {key for key in analysis_payload if key.startswith("ingest_")} == {
        "ingest_github",
        "ingest_jira",
        "ingest_confluence",
        "ingest_swagger",
    }
    read = await tokens.headers(tenant, READ)
    for _ in range(100):
        history = await http.get(HISTORY, headers=read)
        [item] = history.json()["items"]
        if item["status"] == "completed":
            break
        await asyncio.sleep(0.1)
    [row] = await rows(app, sa.select(_instances).where(_instances.c.instance_id == run_id))
    assert item == {
        "runId": run_id,
        "definitionId": SHIPPED,
        "definitionVersion": row.definition_version,
        "status": "completed",
        "startedAt": rfc3339(row.created_at),
        "endedAt": rfc3339(row.ended_at),
        "duration": item["duration"],
    }
    seconds = (row.ended_at - row.created_at).total_seconds()
    assert float(item["duration"].removesuffix("s")) == pytest.approx(seconds, abs=1e-6)
    assert json.loads(row.variables)["analysis"] == {"documents": 40}

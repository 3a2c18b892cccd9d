"""POST /jobs/recalc-quality and POST /jobs/notify-consolidation (issue 13 point 5) on
SQLite and PostgreSQL: the job stored, its payload, its event, the audit entry, the
answer's exact body and status; idempotent repeats; a worker leasing the job over
gRPC; the built-in source paused; bad input naming each field."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from google.protobuf import json_format

from clients.base import CallerHeaders
from clients.transports.grpc import GrpcTransport
from server.app import Application
from server.domain.builtin_sources import mesh_source_id
from server.storage.tables import AuditEntryRow, EventRow, JobRow, table_of
from tests.integration.test_workers import WorkerCalls

_jobs = table_of(JobRow)
_audit = table_of(AuditEntryRow)
_events = table_of(EventRow)
RECALC = "/jobs/recalc-quality"
NOTIFY = "/jobs/notify-consolidation"


@dataclass
class Mesh:
    app: Application
    http: httpx.AsyncClient
    tenant: str
    headers: dict[str, str]
    workers: WorkerCalls

    async def post(self, path: str, body: Any, **headers: str) -> httpx.Response:
        return await self.http.post(path, json=body, headers={**self.headers, **headers})

    async def job(self, job_id: str) -> sa.Row[Any]:
        async with self.app.db.read() as conn:
            return (await conn.execute(sa.select(_jobs).where(_jobs.c.job_id == job_id))).one()

    async def jobs_of_tenant(self) -> int:
        async with self.app.db.read() as conn:
            count = sa.select(sa.func.count()).select_from(_jobs)
            return int(
                (await conn.execute(count.where(_jobs.c.tenant_id == self.tenant))).scalar_one()
            )

    async def audits(self, trace_id: str) -> list[sa.Row[Any]]:
        async with self.app.db.read() as conn:
            statement = sa.select(_audit).where(_audit.c.trace_id == trace_id)
            return list((await conn.execute(statement)).all())

    async def events(self, job_id: str) -> list[tuple[str, str]]:
        async with self.app.db.read() as conn:
            statement = (
                sa.select(_events.c.type, _events.c.trace_id)
                .where(_events.c.subject == f"jobs/{job_id}")
                .order_by(_events.c.event_id)
            )
            return [(row.type, row.trace_id) for row in (await conn.execute(statement)).all()]


@pytest.fixture
async def mesh(
    app: Application, grpc_target: str, http: httpx.AsyncClient, tenant: str, access_token: str
) -> AsyncIterator[Mesh]:
    transport = GrpcTransport(grpc_target)
    caller = CallerHeaders(tenant=tenant, access_token=access_token, operator_reason="test run")
    headers = {
        "Authorization": f"Bearer {access_token}",
        "X-Stella-Tenant": tenant,
        "X-Stella-Operator-Reason": "scores are stale",
        "X-Stella-Operator-Ticket": "QA-12",
    }
    try:
        yield Mesh(
            app=app,
            http=http,
            tenant=tenant,
            headers=headers,
            workers=WorkerCalls(transport, caller),
        )
    finally:
        await transport.close()
        await _cancel_waiting_notifications(http, headers)


async def _cancel_waiting_notifications(http: httpx.AsyncClient, headers: dict[str, str]) -> None:
    """Cancel the test's notify.consolidation jobs still queued: a server of another test
    module with NOTIFICATION_URL set (same database) would otherwise deliver them."""
    for project in (None, "p-9"):
        scoped = headers if project is None else {**headers, "X-Stella-Project": project}
        listed = await http.get(
            "/jobengine/jobs",
            params={"jobType": "notify.consolidation", "status": "queued", "limit": "200"},
            headers=scoped,
        )
        for job in listed.json().get("items", []):
            await http.post(f"/jobengine/jobs/{job['jobId']}/cancel", json={}, headers=scoped)


async def test_recalc_quality_enqueues_one_audited_job_and_answers_202(mesh: Mesh) -> None:
    trace = f"recalc-{uuid.uuid4().hex}"
    body = {
        "scope": "org/repo",
        "document_ids": ["doc-1", "doc-2"],
        "correlation_id": "corr-7",
        "priority": 5,
    }
    response = await mesh.post(RECALC, body, **{"X-Stella-Trace-Id": trace})
    assert response.status_code == 202, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-stella-trace-id"] == trace
    answer = response.json()
    source_id = mesh_source_id(mesh.tenant, None)
    assert answer == {
        "job_id": answer["job_id"],
        "job_type": "quality.recalc",
        "status": "queued",
        "trace_id": trace,
        "created": True,
        "source_id": source_id,
    }
    row = await mesh.job(answer["job_id"])
    assert (row.tenant_id, row.job_type, row.source_id, row.status, row.priority) == (
        mesh.tenant,
        "quality.recalc",
        source_id,
        "queued",
        5,
    )
    assert json.loads(row.payload) == {
        "scope": "org/repo",
        "document_ids": ["doc-1", "doc-2"],
        "correlation_id": "corr-7",
    }
    assert await mesh.events(answer["job_id"]) == [("job.enqueued", trace)]
    [entry] = await mesh.audits(trace)
    assert (entry.tenant_id, entry.action, entry.resource) == (
        mesh.tenant,
        "jobs.recalc_quality",
        f"jobs/{answer['job_id']}",
    )
    assert (entry.reason, entry.ticket, entry.before) == ("scores are stale", "QA-12", None)
    assert json.loads(entry.after)["jobType"] == "quality.recalc"

    # a worker of the quality service leases it over gRPC, payload as stored
    (lease,) = await mesh.workers.lease(["quality.recalc"])
    assert lease.job.job_id == answer["job_id"]
    assert json_format.MessageToDict(lease.job.payload) == json.loads(row.payload)
    leased = await mesh.job(answer["job_id"])
    assert leased.status == "leased"


async def test_notify_consolidation_payload_and_the_built_in_source_per_project(
    mesh: Mesh,
) -> None:
    body = {
        "scope": "space/DOCS",
        "document_ids": ["a"],
        "message": "3 pages merged\ninto one",
        "channels": ["email", "slack"],
    }
    response = await mesh.post(NOTIFY, body, **{"X-Stella-Project": "p-9"})
    assert response.status_code == 202, response.text
    answer = response.json()
    assert (answer["job_type"], answer["status"], answer["created"]) == (
        "notify.consolidation",
        "queued",
        True,
    )
    assert answer["source_id"] == mesh_source_id(mesh.tenant, "p-9")
    assert len(answer["trace_id"]) == 32  # none sent: a new W3C trace id
    row = await mesh.job(answer["job_id"])
    assert (row.project_id, row.source_id) == ("p-9", answer["source_id"])
    assert json.loads(row.payload) == {
        "scope": "space/DOCS",
        "document_ids": ["a"],
        "message": "3 pages merged\ninto one",
        "channels": ["email", "slack"],
        "correlation_id": "",
    }
    sources = await mesh.http.get(
        f"/jobengine/sources/{answer['source_id']}",
        headers={**mesh.headers, "X-Stella-Project": "p-9"},
    )
    assert sources.status_code == 200
    assert {k: sources.json()[k] for k in ("name", "sourceType", "enabled", "paused")} == {
        "name": "mesh:p-9",
        "sourceType": "mesh",
        "enabled": True,
        "paused": False,
    }


async def test_a_repeat_answers_the_trace_id_of_the_job_not_of_the_repeat(mesh: Mesh) -> None:
    """Critic 11: the answer's trace_id is the job's (its events' and spans'), the
    first call's; the repeat's own is its X-Stella-Trace-Id header."""
    for path, key in ((RECALC, "recalc-trace"), (NOTIFY, "notify-trace")):
        body = {"scope": "s", "idempotency_key": key}
        first = await mesh.post(path, body, **{"X-Stella-Trace-Id": f"{key}-first"})
        assert first.status_code == 202, first.text
        assert first.json()["trace_id"] == f"{key}-first"
        repeat = await mesh.post(path, body, **{"X-Stella-Trace-Id": f"{key}-retry"})
        assert repeat.status_code == 200, repeat.text
        assert repeat.headers["X-Stella-Trace-Id"] == f"{key}-retry"
        assert repeat.json() == {**first.json(), "created": False}
        assert await mesh.events(first.json()["job_id"]) == [("job.enqueued", f"{key}-first")]


async def test_a_repeated_idempotency_key_answers_the_first_job(mesh: Mesh) -> None:
    body = {"scope": "s", "idempotency_key": "recalc-2026-11-30"}
    first = await mesh.post(RECALC, body)
    assert first.status_code == 202, first.text
    again = await mesh.post(RECALC, body, **{"X-Stella-Trace-Id": "retry-1"})
    assert again.status_code == 200, again.text
    # The job's own trace id (its first call's), not the repeat's (in the header).
    assert again.json() == {**first.json(), "created": False}
    assert again.headers["X-Stella-Trace-Id"] == "retry-1"
    assert first.json()["trace_id"] == first.headers["X-Stella-Trace-Id"] != "retry-1"

    other = await mesh.post(RECALC, {**body, "scope": "t"})
    assert other.status_code == 409, other.text
    assert other.json()["code"] == "ALREADY_EXISTS"
    notify = await mesh.post(NOTIFY, body)  # the tenant's key space is shared
    assert notify.status_code == 409
    assert await mesh.jobs_of_tenant() == 1


async def test_a_paused_mesh_source_holds_the_calls_back(mesh: Mesh) -> None:
    first = await mesh.post(RECALC, {})
    assert first.status_code == 202, first.text
    source_id = first.json()["source_id"]
    paused = await mesh.http.post(
        f"/jobengine/sources/{source_id}/pause", json={}, headers=mesh.headers
    )
    assert paused.status_code == 200, paused.text
    refused = await mesh.post(NOTIFY, {"scope": "x"})
    assert refused.status_code == 409, refused.text
    assert refused.json()["details"][0]["reason"] == "SOURCE_PAUSED"
    assert await mesh.jobs_of_tenant() == 1
    resumed = await mesh.http.post(
        f"/jobengine/sources/{source_id}/resume", json={}, headers=mesh.headers
    )
    assert resumed.status_code == 200
    assert (await mesh.post(NOTIFY, {"scope": "x"})).status_code == 202


@pytest.mark.parametrize(
    ("path", "body", "violations"),
    [
        (RECALC, {"priority": 5000}, {"priority": "must be between -1000 and 1000, got 5000"}),
        (
            RECALC,
            {"document_ids": ["ok", "", "bad\u0007"], "scope": "   "},
            {
                "scope": "must not be blank",
                "document_ids[1]": "must not be empty",
                "document_ids[2]": "must not contain control characters",
            },
        ),
        (
            RECALC,
            {"document_ids": ["d"] * 201},
            {"document_ids": "must hold at most 200 ids, got 201"},
        ),
        (
            RECALC,
            {"correlation_id": "c" * 201},
            {"correlation_id": "must be at most 200 characters"},
        ),
        (
            NOTIFY,
            {"channels": ["email", "Email", "email"], "message": "m" * 2001},
            {
                "message": "must be at most 2000 characters",
                "channels[1]": "must be a lowercase slug: a letter, then up to 63 letters, digits,"
                " '.', '_' or '-', got 'Email'",
                "channels[2]": "names 'email' twice",
            },
        ),
        (
            NOTIFY,
            {"message": "bell\u0007", "idempotency_key": " "},
            {
                "message": "must not contain control characters other than line breaks",
                "idempotency_key": "must not be blank",
            },
        ),
    ],
)
async def test_bad_input_is_400_naming_each_field_and_enqueues_nothing(
    mesh: Mesh, path: str, body: dict[str, Any], violations: dict[str, str]
) -> None:
    response = await mesh.post(path, body)
    assert response.status_code == 400, response.text
    document = response.json()
    assert document["code"] == "INVALID_ARGUMENT"
    [bad_request] = [d for d in document["details"] if d["@type"].endswith("BadRequest")]
    assert {v["field"]: v["description"] for v in bad_request["fieldViolations"]} == violations
    assert await mesh.jobs_of_tenant() == 0


async def test_the_policy_is_enqueueing_a_job(mesh: Mesh, tokens: Any) -> None:
    no_reason = {k: v for k, v in mesh.headers.items() if k != "X-Stella-Operator-Reason"}
    missing = await mesh.http.post(RECALC, json={}, headers=no_reason)
    assert missing.status_code == 400, missing.text
    assert "X-Stella-Operator-Reason" in missing.json()["error"]
    reader = await tokens.token(mesh.tenant, ("orch:read",))
    forbidden = await mesh.http.post(
        NOTIFY, json={}, headers={**mesh.headers, "Authorization": f"Bearer {reader}"}
    )
    assert forbidden.status_code == 403, forbidden.text
    assert await mesh.jobs_of_tenant() == 0

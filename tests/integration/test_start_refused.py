"""A start whose first step the job engine refuses writes nothing (critic finding 3
on issue 13) on SQLite and PostgreSQL against the session's real server: with the
tenant's "orchestra" source paused, POST /workflows/run answers 409 and
StartProcess (/orchestra-api) 422, FAILED_PRECONDITION SOURCE_PAUSED naming the
step, and no run, job, event or audit entry is stored; resumed, the same start
runs. A refusal in a later step stays the instance's incident."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import sqlalchemy as sa

from server.app import Application
from server.identity.scopes import ORCHESTRA_PERMISSION
from server.storage.tables import (
    AuditEntryRow,
    EventRow,
    JobRow,
    OrchestraInstanceRow,
    SourceRow,
    table_of,
)
from tests.support.auth import TokenFactory
from tests.support.orchestra import load_definition

_jobs = table_of(JobRow)
_audit = table_of(AuditEntryRow)
_events = table_of(EventRow)
_sources = table_of(SourceRow)
_instances = table_of(OrchestraInstanceRow)


async def _count(app: Application, table: sa.Table, tenant: str) -> int:
    async with app.db.read() as conn:
        statement = sa.select(sa.func.count()).select_from(table).where(table.c.tenant_id == tenant)
        return int((await conn.execute(statement)).scalar_one())


async def _stored(app: Application, tenant: str) -> tuple[int, ...]:
    return tuple([await _count(app, t, tenant) for t in (_instances, _jobs, _events, _audit)])


async def _orchestra_source(app: Application, tenant: str) -> str:
    async with app.db.read() as conn:
        statement = sa.select(_sources.c.source_id).where(
            _sources.c.tenant_id == tenant, _sources.c.name == "orchestra"
        )
        source_id: str = (await conn.execute(statement)).scalar_one()
    return source_id


def _error(response: httpx.Response) -> tuple[int, str, str, dict[str, str]]:
    body = response.json()
    [info] = [d for d in body["details"] if d["@type"].endswith("ErrorInfo")]
    return response.status_code, body["code"], info["reason"], info.get("metadata", {})


def _one_task(definition_id: str, job_type: str) -> dict[str, Any]:
    return {
        "id": definition_id,
        "nodes": [
            {"id": "start", "type": "start"},
            {"id": "work", "type": "service_task", "job_type": job_type},
            {"id": "done", "type": "end"},
        ],
        "flows": [{"from": "start", "to": "work"}, {"from": "work", "to": "done"}],
    }


async def test_run_and_start_with_the_orchestra_source_paused_write_nothing(
    app: Application, http: httpx.AsyncClient, tokens: TokenFactory, tenant: str
) -> None:
    job_type = f"paused.{uuid.uuid4().hex[:6]}"
    definition_id = f"paused_{uuid.uuid4().hex[:8]}"
    await load_definition(app, _one_task(definition_id, job_type))
    operator = {
        **await tokens.headers(tenant, ("orch:read", "orch:operate")),
        "X-Stella-Operator-Reason": "finding 3",
    }
    first = await http.post(
        "/workflows/run", json={"definitionId": definition_id}, headers=operator
    )
    assert first.status_code == 202, first.text  # creates the tenant's orchestra source
    source_id = await _orchestra_source(app, tenant)
    paused = await http.post(f"/jobengine/sources/{source_id}/pause", headers=operator)
    assert paused.status_code == 200, paused.text
    before = await _stored(app, tenant)
    message = (
        f"the job engine refused the {job_type!r} job of step 'work': source"
        f" {source_id!r} is paused; resume it to enqueue jobs"
    )

    refused = await http.post(
        "/workflows/run", json={"definitionId": definition_id}, headers=operator
    )
    assert _error(refused) == (
        409,
        "FAILED_PRECONDITION",
        "SOURCE_PAUSED",
        {"sourceId": source_id, "nodeId": "work"},
    )
    assert refused.json()["error"] == message

    orchestra_token = await tokens.token(tenant, (), permissions=[ORCHESTRA_PERMISSION])
    orchestra = {"Authorization": f"Bearer {orchestra_token}", "X-Stella-Tenant": tenant}
    started = await http.post(
        f"/orchestra-api/process/{definition_id}/start", json={}, headers=orchestra
    )
    assert _error(started) == (
        422,
        "FAILED_PRECONDITION",
        "SOURCE_PAUSED",
        {"sourceId": source_id, "nodeId": "work"},
    )
    assert started.json()["error"] == message
    assert await _stored(app, tenant) == before  # no run, job, event or audit entry

    resumed = await http.post(f"/jobengine/sources/{source_id}/resume", headers=operator)
    assert resumed.status_code == 200, resumed.text
    again = await http.post(
        "/workflows/run", json={"definitionId": definition_id}, headers=operator
    )
    assert again.status_code == 202, again.text
    async with app.db.read() as conn:
        statement = sa.select(_instances.c.status).where(
            _instances.c.instance_id == again.json()["runId"]
        )
        assert (await conn.execute(statement)).scalar_one() == "running"

"""Jobs a process instance owns are not replayed (critic finding 2 on issue 13) on
SQLite and PostgreSQL against the session's real server: after a saga compensated
its dead-lettered step, neither the dead-letter queue (one entry, a batch, the
pending sweep and its mesh path POST /infrastructure/dlq/retry) nor ReplayJob
enqueues a clone of the step's job; the answers name the instance, the entry stays
pending and no job is added. A plain process's step is refused alike."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import sqlalchemy as sa

from server.app import Application
from server.storage.tables import DeadLetterEntryRow, JobRow, table_of
from tests.integration.test_orchestra_engine import Orchestra
from tests.integration.test_orchestra_sagas import (  # noqa: F401
    SagaWorker,
    Types,
    _one,
    _run_to_ship_failure,
    _unique,
    four_steps,
    orchestra,
    worker,
)
from tests.support.auth import TokenFactory
from tests.support.orchestra import load_definition

_jobs = table_of(JobRow)
_entries = table_of(DeadLetterEntryRow)


async def _replay_headers(tokens: TokenFactory, tenant: str) -> dict[str, str]:
    token = await tokens.token(tenant, ("orch:backfill",), backfill_reason="replay the outage")
    return {
        "Authorization": f"Bearer {token}",
        "X-Stella-Tenant": tenant,
        "X-Stella-Operator-Reason": "outage over",
    }


async def _entry(app: Application, job_id: str) -> Any:
    async with app.db.read() as conn:
        return (await conn.execute(sa.select(_entries).where(_entries.c.job_id == job_id))).one()


async def _job_ids(app: Application, tenant: str) -> set[str]:
    async with app.db.read() as conn:
        rows = await conn.execute(sa.select(_jobs.c.job_id).where(_jobs.c.tenant_id == tenant))
        return {row.job_id for row in rows}


def _error(response: httpx.Response) -> tuple[int, str, dict[str, str]]:
    body = response.json()
    [info] = [d for d in body["details"] if d["@type"].endswith("ErrorInfo")]
    return response.status_code, info["reason"], info.get("metadata", {})


async def test_a_compensated_sagas_dead_lettered_step_is_not_replayed(
    app: Application,
    orchestra: Orchestra,  # noqa: F811
    worker: SagaWorker,  # noqa: F811
    http: httpx.AsyncClient,
    tokens: TokenFactory,
    tenant: str,
) -> None:
    t = Types()
    definition_id = _unique("saga")
    await load_definition(app, four_steps(definition_id, t))
    instance_id, jobs = await _run_to_ship_failure(orchestra, worker, definition_id, t)
    await worker.complete((await _one(worker, t.refund)).token, {})
    await worker.complete((await _one(worker, t.unreserve)).token, {})
    assert (await orchestra.wait(instance_id, "compensated")).status == "compensated"
    ship = jobs["ship"]
    entry = await _entry(app, ship)
    assert entry.status == "pending"
    before = await _job_ids(app, tenant)
    headers = await _replay_headers(tokens, tenant)
    message = (
        f"job {ship!r} is a step of process instance {instance_id!r}; it is not replayed"
        " outside its instance (the instance has moved on from its ending): start a new"
        " instance"
    )

    single = await http.post(
        f"/jobengine/deadletter/{entry.entry_id}/replay", json={}, headers=headers
    )
    owner = await _owner(app, ship)
    assert owner.startswith("orchestra-tokens/")
    assert _error(single) == (
        409,
        "JOB_OWNED_BY_PROCESS",
        {"jobId": ship, "owner": owner, "instanceId": instance_id},
    )
    assert single.json()["error"] == message

    skipped = {
        "results": [
            {
                "entryId": entry.entry_id,
                "outcome": "skipped",
                "reason": "JOB_OWNED_BY_PROCESS",
                "message": message,
            }
        ],
        "replayed": 0,
        "skipped": 1,
        "failed": 0,
    }
    batch = await http.post(
        "/jobengine/deadletter/replay/batch", json={"entryIds": [entry.entry_id]}, headers=headers
    )
    assert (batch.status_code, batch.json()) == (200, skipped)
    for path in ("/jobengine/deadletter/replay/pending", "/infrastructure/dlq/retry"):
        sweep = await http.post(path, json={"jobType": t.ship}, headers=headers)
        assert (sweep.status_code, sweep.json()) == (200, skipped), path

    operate = await tokens.headers(tenant, ("orch:read", "orch:operate"))
    direct = await http.post(
        f"/jobengine/jobs/{ship}/replay",
        json={},
        headers={**operate, "X-Stella-Operator-Reason": "outage over"},
    )
    assert _error(direct)[:2] == (409, "JOB_OWNED_BY_PROCESS")
    assert direct.json()["error"] == message

    after = await _entry(app, ship)
    assert (after.status, after.replay_count, after.replay_job_id) == ("pending", 0, None)
    assert await _job_ids(app, tenant) == before  # no clone of anything
    assert await worker.lease_any([t.ship], wait=0.2) == []


async def _owner(app: Application, job_id: str) -> str:
    async with app.db.read() as conn:
        owner = (
            await conn.execute(sa.select(_jobs.c.owner).where(_jobs.c.job_id == job_id))
        ).scalar()
    assert isinstance(owner, str)
    return owner


async def test_a_plain_process_step_is_refused_naming_its_owner(
    app: Application,
    orchestra: Orchestra,  # noqa: F811
    worker: SagaWorker,  # noqa: F811
    http: httpx.AsyncClient,
    tokens: TokenFactory,
    tenant: str,
) -> None:
    job_type = f"plain.{uuid.uuid4().hex[:6]}"
    definition_id = _unique("plain")
    definition = {
        "id": definition_id,
        "nodes": [
            {"id": "start", "type": "start"},
            {"id": "work", "type": "service_task", "job_type": job_type},
            {"id": "done", "type": "end"},
        ],
        "flows": [{"from": "start", "to": "work"}, {"from": "work", "to": "done"}],
    }
    await load_definition(app, definition)
    instance_id = await orchestra.start(definition_id, {})
    lease = await _one(worker, job_type)
    await worker.fail(lease.token)
    assert (await orchestra.wait(instance_id, "failed")).status == "failed"
    job_id = lease.job.job_id
    owner = await _owner(app, job_id)
    assert owner.startswith("orchestra-tokens/")
    entry = await _entry(app, job_id)
    headers = await _replay_headers(tokens, tenant)

    # the token is gone with the step: the engine no longer records the instance
    single = await http.post(
        f"/jobengine/deadletter/{entry.entry_id}/replay", json={}, headers=headers
    )
    assert _error(single) == (409, "JOB_OWNED_BY_PROCESS", {"jobId": job_id, "owner": owner})
    assert single.json()["error"] == (
        f"job {job_id!r} is a step of a process instance ({owner}); it is not replayed"
        " outside its instance (the instance has moved on from its ending): start a new"
        " instance"
    )
    sweep = await http.post(
        "/infrastructure/dlq/retry", json={"jobType": job_type}, headers=headers
    )
    assert sweep.status_code == 200, sweep.text
    assert (sweep.json()["replayed"], sweep.json()["skipped"]) == (0, 1)
    assert (await _entry(app, job_id)).status == "pending"
    assert sweep.json()["results"][0]["reason"] == "JOB_OWNED_BY_PROCESS"

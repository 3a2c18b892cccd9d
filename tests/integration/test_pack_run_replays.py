"""A pack run's jobs are re-run by the run, never replayed beside it (critic finding on
stop 21), on SQLite and PostgreSQL against the session's real server and a real
worker (the SDK over gRPC).

A run whose job fails for good (dead-lettered, with a pending dead-letter entry)
ends failed with its dependent skipped. Then:

- the dead-letter queue refuses the entry, alone (409), in a batch and in a sweep
  (`skipped`), with JOB_IN_PACK_RUN naming the run; ReplayJob refuses the job alike;
  nothing is enqueued and the entry stays pending;
- retrying the run re-runs the job: the retry's job names it in `replayOf`, the old
  job's history gets `job.replayed`, and the entry becomes `replayed` by the retry's
  job (off the pending count) and `resolved` when that job succeeds;
- afterwards the old job's refusal names the retry (`retriedBy`), and a job of the
  run that succeeded can still be replayed (no retry runs it again).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import sqlalchemy as sa

from clients.worker import JobFailed, LeasedJob
from orchestrator.jobengine.v1 import pack_run_pb2
from server.app import Application
from server.storage.tables import DeadLetterEntryRow, EventRow, JobRow, table_of
from tests.integration.test_pack_runs import job
from tests.integration.test_pack_runs_workers import Bench, bench  # noqa: F401
from tests.support.auth import TokenFactory

_jobs = table_of(JobRow)
_entries = table_of(DeadLetterEntryRow)
_events = table_of(EventRow)


async def _entry(app: Application, entry_id: str) -> Any:
    async with app.db.read() as conn:
        statement = sa.select(_entries).where(_entries.c.entry_id == entry_id)
        return (await conn.execute(statement)).one()


async def _rows(app: Application, tenant: str) -> dict[str, Any]:
    async with app.db.read() as conn:
        rows = await conn.execute(sa.select(_jobs).where(_jobs.c.tenant_id == tenant))
        return {row.job_id: row for row in rows}


async def _history(app: Application, job_id: str) -> list[tuple[str, dict[str, Any]]]:
    async with app.db.read() as conn:
        rows = await conn.execute(
            sa.select(_events.c.type, _events.c.data)
            .where(_events.c.subject == f"jobs/{job_id}")
            .order_by(_events.c.event_id)
        )
        return [
            (row.type, row.data if isinstance(row.data, dict) else json.loads(row.data))
            for row in rows
        ]


async def _run_until_ended(
    bench: Bench,  # noqa: F811
    handler: Callable[[LeasedJob], Awaitable[object]],
    pack_run_id: str,
) -> pack_run_pb2.PackRun:
    """Run a worker with `handler` until the run is no longer running; drained after."""
    worker = bench.worker(handler)
    running = asyncio.create_task(worker.run())
    try:
        return await bench.until(pack_run_id, lambda r: r.status != "running")
    finally:
        worker.drain()
        await asyncio.wait_for(running, 15)


def _error(response: httpx.Response) -> tuple[int, str, dict[str, str], str]:
    body = response.json()
    [info] = [d for d in body["details"] if d["@type"].endswith("ErrorInfo")]
    return response.status_code, info["reason"], info.get("metadata", {}), body["error"]


async def test_a_pack_runs_dead_lettered_job_is_re_run_by_the_runs_retry_only(
    bench: Bench,  # noqa: F811
    app: Application,
    http: httpx.AsyncClient,
    tokens: TokenFactory,
    tenant: str,
) -> None:
    t, s = bench.job_type, bench.source_id
    failing: set[str] = set()  # runs whose "flaky" job fails for good
    ran: list[tuple[str, str]] = []

    async def handler(leased: LeasedJob) -> object:
        name = leased.payload["name"] if isinstance(leased.payload, dict) else "?"
        ran.append((leased.job.pack_run_id, str(name)))
        if name == "flaky" and leased.job.pack_run_id in failing:
            raise JobFailed("dependency", "HTTP_503", "upstream down", retryable=False)
        return {"ok": True}

    first = await bench.packs.create(
        "replayed-pack",
        [
            job("flaky", t, s, payload={"name": "flaky"}),
            job("after", t, s, "flaky", payload={"name": "after"}),
            job("solo", t, s, payload={"name": "solo"}),
        ],
    )
    failing.add(first.pack_run_id)
    first = await _run_until_ended(bench, handler, first.pack_run_id)
    assert [(j.name, j.status, j.job_status) for j in first.jobs] == [
        ("flaky", "failed", "dead_lettered"),
        ("after", "skipped", ""),
        ("solo", "succeeded", "succeeded"),
    ]
    flaky, solo = first.jobs[0].job_id, first.jobs[2].job_id
    async with app.db.read() as conn:
        entry_id = (
            await conn.execute(sa.select(_entries.c.entry_id).where(_entries.c.job_id == flaky))
        ).scalar_one()

    backfill = await tokens.token(tenant, ("orch:backfill",), backfill_reason="rerun the run")
    replaying = {
        "Authorization": f"Bearer {backfill}",
        "X-Stella-Tenant": tenant,
        "X-Stella-Operator-Reason": "upstream is back",
    }
    operating = {
        **await tokens.headers(tenant, ("orch:read", "orch:operate")),
        "X-Stella-Operator-Reason": "upstream is back",
    }
    before = await _rows(app, tenant)
    message = (
        f"job {flaky!r} is a job of pack run {first.pack_run_id!r}; retry the run to run it"
        " again (a retry re-runs every job that did not succeed)"
    )
    refused = {"jobId": flaky, "packRunId": first.pack_run_id}

    single = await http.post(f"/jobengine/deadletter/{entry_id}/replay", json={}, headers=replaying)
    assert _error(single) == (409, "JOB_IN_PACK_RUN", refused, message)
    skipped = {
        "results": [
            {
                "entryId": entry_id,
                "outcome": "skipped",
                "reason": "JOB_IN_PACK_RUN",
                "message": message,
            }
        ],
        "replayed": 0,
        "skipped": 1,
        "failed": 0,
    }
    batch = await http.post(
        "/jobengine/deadletter/replay/batch", json={"entryIds": [entry_id]}, headers=replaying
    )
    assert (batch.status_code, batch.json()) == (200, skipped)
    sweep = await http.post(
        "/jobengine/deadletter/replay/pending", json={"jobType": t}, headers=replaying
    )
    assert (sweep.status_code, sweep.json()) == (200, skipped)
    direct = await http.post(f"/jobengine/jobs/{flaky}/replay", json={}, headers=operating)
    assert _error(direct) == (409, "JOB_IN_PACK_RUN", refused, message)

    assert await _rows(app, tenant) == before  # nothing enqueued, nothing changed
    entry = await _entry(app, entry_id)
    assert (entry.status, entry.replay_job_id, entry.replay_count) == ("pending", None, 0)
    stats = await http.get("/jobengine/deadletter/stats", headers=operating)
    assert stats.json()["totals"] == {"total": "1", "pending": "1", "retryable": "0"}

    # The run's retry re-runs the job and takes its entry over.
    second = await bench.backfill.retry(first.pack_run_id)
    assert [(j.name, j.status) for j in second.jobs] == [("flaky", "running"), ("after", "pending")]
    again = second.jobs[0].job_id
    rows = await _rows(app, tenant)
    assert rows[again].replay_of == flaky
    assert rows[again].pack_run_id == second.pack_run_id
    assert (await _history(app, flaky))[-1] == (
        "job.replayed",
        {"replayJobId": again, "packRunId": second.pack_run_id},
    )
    assert (await _history(app, again))[0] == (
        "job.enqueued",
        {"to": "queued", "packRunId": second.pack_run_id, "replayOf": flaky},
    )
    entry = await _entry(app, entry_id)
    assert (entry.status, entry.replay_job_id, entry.replay_count) == ("replayed", again, 1)
    stats = await http.get("/jobengine/deadletter/stats", headers=operating)
    assert stats.json()["totals"] == {"total": "1", "pending": "0", "retryable": "0"}
    taken = await http.post(f"/jobengine/deadletter/{entry_id}/replay", json={}, headers=replaying)
    assert (taken.status_code, taken.json()) == (
        200,
        {
            "results": [
                {
                    "entryId": entry_id,
                    "outcome": "skipped",
                    "reason": "ALREADY_REPLAYED",
                    "message": f"entry is replayed; its replay is job {again!r}; only a pending"
                    " entry is replayed",
                }
            ],
            "replayed": 0,
            "skipped": 1,
            "failed": 0,
        },
    )

    second = await _run_until_ended(bench, handler, second.pack_run_id)
    assert second.status == "succeeded"
    entry = await _entry(app, entry_id)
    assert (entry.status, entry.replay_job_id, entry.replay_count) == ("resolved", again, 1)
    assert sorted(ran) == sorted(
        [
            (first.pack_run_id, "flaky"),
            (first.pack_run_id, "solo"),
            (second.pack_run_id, "flaky"),
            (second.pack_run_id, "after"),
        ]
    )

    # Afterwards the old job's refusal names the retry; a succeeded job replays.
    direct = await http.post(f"/jobengine/jobs/{flaky}/replay", json={}, headers=operating)
    assert _error(direct) == (
        409,
        "JOB_IN_PACK_RUN",
        {**refused, "retriedBy": second.pack_run_id},
        f"job {flaky!r} is a job of pack run {first.pack_run_id!r}, retried by pack run"
        f" {second.pack_run_id!r}; that run succeeded: nothing is left to re-run",
    )
    clone = await http.post(f"/jobengine/jobs/{solo}/replay", json={}, headers=operating)
    assert clone.status_code == 201, clone.text
    assert (clone.json()["replayOf"], clone.json()["packRunId"]) == (solo, first.pack_run_id)


async def test_a_running_runs_dead_lettered_job_waits_for_the_run_to_end(
    bench: Bench,  # noqa: F811
    http: httpx.AsyncClient,
    tokens: TokenFactory,
    tenant: str,
) -> None:
    """A job dead-lettered while others of its run still run: the refusal says to
    retry once the run has ended."""
    t, s = bench.job_type, bench.source_id
    release = asyncio.Event()

    async def handler(leased: LeasedJob) -> object:
        name = leased.payload["name"] if isinstance(leased.payload, dict) else "?"
        if name == "flaky":
            raise JobFailed("dependency", "HTTP_503", "upstream down", retryable=False)
        await release.wait()  # "slow" holds the run open
        return {"ok": True}

    run = await bench.packs.create(
        f"open-{uuid.uuid4().hex[:6]}",
        [
            job("flaky", t, s, payload={"name": "flaky"}),
            job("slow", t, s, payload={"name": "slow"}),
        ],
    )
    worker = bench.worker(handler)
    running = asyncio.create_task(worker.run())
    try:
        run = await bench.until(run.pack_run_id, lambda r: r.jobs[0].status == "failed")
        assert (run.status, run.jobs[1].status) == ("running", "running")
        flaky = run.jobs[0].job_id
        operating = {
            **await tokens.headers(tenant, ("orch:read", "orch:operate")),
            "X-Stella-Operator-Reason": "upstream is back",
        }
        direct = await http.post(f"/jobengine/jobs/{flaky}/replay", json={}, headers=operating)
        assert _error(direct) == (
            409,
            "JOB_IN_PACK_RUN",
            {"jobId": flaky, "packRunId": run.pack_run_id},
            f"job {flaky!r} is a job of pack run {run.pack_run_id!r}, which is still running;"
            " once it has ended, retry the run to run the job again",
        )
    finally:
        release.set()
        worker.drain()
        await asyncio.wait_for(running, 15)


async def test_the_entry_follows_retries_through_a_canceled_one(
    bench: Bench,  # noqa: F811
    app: Application,
    http: httpx.AsyncClient,
    tokens: TokenFactory,
    tenant: str,
) -> None:
    """Critic finding on this change: a retry whose job is canceled (its run canceled
    before the job ran) must not end the chain. Its own retry takes the entry over
    from the canceled job, the entry is pending again naming that retry's job when
    it is dead-lettered (one entry, never a second), and resolved by the retry that
    succeeds. Refusals name the newest retry, the run to act on."""
    t, s = bench.job_type, bench.source_id
    failing: set[str] = set()

    async def handler(leased: LeasedJob) -> object:
        if leased.job.pack_run_id in failing:
            raise JobFailed("dependency", "HTTP_503", "upstream down", retryable=False)
        return {"ok": True}

    first = await bench.packs.create("chain", [job("d", t, s, payload={"name": "d"})])
    failing.add(first.pack_run_id)
    first = await _run_until_ended(bench, handler, first.pack_run_id)
    d1 = first.jobs[0].job_id
    async with app.db.read() as conn:
        entry_id = (
            await conn.execute(sa.select(_entries.c.entry_id).where(_entries.c.job_id == d1))
        ).scalar_one()

    second = await bench.backfill.retry(first.pack_run_id)  # no worker: d2 stays queued
    d2 = second.jobs[0].job_id
    assert (await bench.packs.cancel(second.pack_run_id)).pack_run.status == "canceled"
    entry = await _entry(app, entry_id)
    assert (entry.status, entry.job_id, entry.replay_job_id, entry.replay_count) == (
        "replayed",
        d1,
        d2,
        1,
    )

    third = await bench.backfill.retry(second.pack_run_id)
    d3 = third.jobs[0].job_id
    assert (await _rows(app, tenant))[d3].replay_of == d2
    entry = await _entry(app, entry_id)
    assert (entry.status, entry.replay_job_id, entry.replay_count) == ("replayed", d3, 2)
    failing.add(third.pack_run_id)
    third = await _run_until_ended(bench, handler, third.pack_run_id)
    assert (third.status, third.jobs[0].job_status) == ("failed", "dead_lettered")
    entry = await _entry(app, entry_id)
    assert (entry.status, entry.job_id, entry.replay_count) == ("pending", d3, 2)
    async with app.db.read() as conn:
        entries = (
            await conn.execute(
                sa.select(sa.func.count())
                .select_from(_entries)
                .where(_entries.c.job_id.in_([d1, d2, d3]) | (_entries.c.entry_id == entry_id))
            )
        ).scalar_one()
    assert entries == 1

    operating = {
        **await tokens.headers(tenant, ("orch:read", "orch:operate")),
        "X-Stella-Operator-Reason": "upstream is back",
    }
    direct = await http.post(f"/jobengine/jobs/{d1}/replay", json={}, headers=operating)
    assert _error(direct) == (
        409,
        "JOB_IN_PACK_RUN",
        {
            "jobId": d1,
            "packRunId": first.pack_run_id,
            "retriedBy": second.pack_run_id,
            "newestRetry": third.pack_run_id,
        },
        f"job {d1!r} is a job of pack run {first.pack_run_id!r}, retried by pack run"
        f" {second.pack_run_id!r}; its newest retry, {third.pack_run_id!r}, failed: retry it"
        " to run the job again",
    )

    fourth = await bench.backfill.retry(third.pack_run_id)
    d4 = fourth.jobs[0].job_id
    fourth = await _run_until_ended(bench, handler, fourth.pack_run_id)
    assert fourth.status == "succeeded"
    entry = await _entry(app, entry_id)
    assert (entry.status, entry.job_id, entry.replay_job_id, entry.replay_count) == (
        "resolved",
        d3,
        d4,
        3,
    )
    stats = await http.get("/jobengine/deadletter/stats", headers=operating)
    assert stats.json()["totals"] == {"total": "1", "pending": "0", "retryable": "0"}

"""The dead-letter queue end to end (issue 10 points 1-3), on SQLite and PostgreSQL:
real workers fail jobs over gRPC, the entries, cluster counters, stats, summary and
replays are read over HTTP and from the stored rows."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from clients.base import CallerHeaders
from clients.errors import ApiError
from clients.jobs import JobsClient
from clients.sources import SourcesClient
from clients.transports.grpc import GrpcTransport
from orchestrator.jobengine.v1 import worker_service_pb2 as pb
from server.app import Application
from server.domain.fingerprint import fingerprint
from server.storage.tables import (
    AuditEntryRow,
    DeadLetterClusterRow,
    DeadLetterEntryRow,
    EventRow,
    JobRow,
    table_of,
)
from tests.integration.test_workers import Harness, WorkerCalls, aware
from tests.support.auth import TokenFactory
from tests.support.clock import TestClock

_entries = table_of(DeadLetterEntryRow)
_clusters = table_of(DeadLetterClusterRow)
_jobs = table_of(JobRow)
_audit = table_of(AuditEntryRow)
_events = table_of(EventRow)
TIMEOUT_7 = "timeout after 3012 ms on host-7"
TIMEOUT_2 = "timeout after 2977 ms on host-2"


@dataclass
class Queue:
    """A tenant with a source, a worker over gRPC, and HTTP headers for the reads
    (orch:operate) and the replays (orch:backfill with its reason and ticket)."""

    harness: Harness
    http: httpx.AsyncClient
    read: dict[str, str]
    replay: dict[str, str]

    async def dead_letter(
        self,
        job_type: str = "scan.image",
        *,
        category: str = "timeout",
        code: str = "DEADLINE",
        message: str = TIMEOUT_7,
        retryable: bool = True,
        **fields: Any,
    ) -> str:
        """Enqueue one job with one attempt, lease it and fail it: dead-lettered."""
        (job,) = await self.harness.enqueue(job_type, max_attempts=1, **fields)
        (lease,) = await self.harness.workers.lease([job_type])
        assert lease.job.job_id == job.job_id
        (outcome,) = await self.harness.workers.fail(
            pb.JobFailure(
                token=lease.token,
                category=category,
                code=code,
                message=message,
                retryable=retryable,
            )
        )
        assert outcome.job_status == "dead_lettered"
        return str(job.job_id)

    async def entry_of(self, job_id: str) -> sa.Row[Any]:
        async with self.harness.app.db.read() as conn:
            return (
                await conn.execute(sa.select(_entries).where(_entries.c.job_id == job_id))
            ).one()

    async def entry(self, entry_id: str) -> sa.Row[Any]:
        async with self.harness.app.db.read() as conn:
            statement = sa.select(_entries).where(_entries.c.entry_id == entry_id)
            return (await conn.execute(statement)).one()

    async def clusters(self) -> dict[str, tuple[int, int, int]]:
        async with self.harness.app.db.read() as conn:
            rows = (
                await conn.execute(
                    sa.select(_clusters).where(_clusters.c.tenant_id == self.harness.tenant)
                )
            ).all()
        return {row.fingerprint: (row.total, row.pending, row.retryable) for row in rows}

    async def replay_one(self, entry_id: str, prefix: str = "/jobengine") -> httpx.Response:
        return await self.http.post(
            f"{prefix}/deadletter/{entry_id}/replay", json={}, headers=self.replay
        )

    async def jobs_replaying(self, job_id: str) -> list[sa.Row[Any]]:
        async with self.harness.app.db.read() as conn:
            statement = sa.select(_jobs).where(_jobs.c.replay_of == job_id)
            return list((await conn.execute(statement)).all())


@pytest.fixture
async def queue(
    app: Application,
    grpc_target: str,
    http: httpx.AsyncClient,
    tenant: str,
    access_token: str,
    tokens: TokenFactory,
) -> AsyncIterator[Queue]:
    transport = GrpcTransport(grpc_target)
    headers = CallerHeaders(tenant=tenant, access_token=access_token, operator_reason="test run")
    backfill = await tokens.token(
        tenant, ("orch:backfill",), backfill_reason="replay the outage", backfill_ticket="INC-9"
    )
    try:
        source = await SourcesClient(transport, headers).register_source("feed", "manual")
        harness = Harness(
            app=app,
            workers=WorkerCalls(transport, headers),
            jobs=JobsClient(transport, headers),
            source_id=source.source_id,
            tenant=tenant,
        )
        yield Queue(
            harness=harness,
            http=http,
            read={"Authorization": f"Bearer {access_token}", "X-Stella-Tenant": tenant},
            replay={
                "Authorization": f"Bearer {backfill}",
                "X-Stella-Tenant": tenant,
                "X-Stella-Operator-Reason": "outage over",
                "X-Stella-Operator-Ticket": "OPS-3",
            },
        )
    finally:
        await transport.close()


async def test_a_final_failure_writes_its_entry_and_counters(queue: Queue) -> None:
    job_id = await queue.dead_letter(message=TIMEOUT_7)
    entry = await queue.entry_of(job_id)
    job = await queue.harness.row(job_id)
    print_ = fingerprint("timeout", "DEADLINE", TIMEOUT_7)
    assert (entry.tenant_id, entry.job_type, entry.source_id) == (
        queue.harness.tenant,
        "scan.image",
        queue.harness.source_id,
    )
    assert (entry.category, entry.error_code, entry.message, entry.fingerprint) == (
        "timeout",
        "DEADLINE",
        TIMEOUT_7,
        print_,
    )
    assert (entry.retryable, entry.attempts, entry.status, entry.replay_count) == (
        True,
        1,
        "pending",
        0,
    )
    assert entry.replay_job_id is None
    # written by the failure's own transaction: the job's finish time is the entry's
    assert aware(entry.first_failed_at) == aware(entry.last_failed_at) == aware(job.finished_at)
    assert await queue.clusters() == {print_: (1, 1, 1)}

    response = await queue.http.get("/jobengine/deadletter", headers=queue.read)
    assert response.status_code == 200, response.text
    [item] = response.json()["items"]
    assert item == {
        "entryId": entry.entry_id,
        "jobId": job_id,
        "jobType": "scan.image",
        "sourceId": queue.harness.source_id,
        "category": "timeout",
        "errorCode": "DEADLINE",
        "message": TIMEOUT_7,
        "fingerprint": print_,
        "retryable": True,
        "attempts": 1,
        "status": "pending",
        "firstFailedAt": item["firstFailedAt"],
        "lastFailedAt": item["firstFailedAt"],
        "replayCount": 0,
    }
    assert datetime.fromisoformat(item["firstFailedAt"]) == aware(entry.first_failed_at)


async def test_a_retryable_failure_with_attempts_left_writes_no_entry(queue: Queue) -> None:
    await queue.harness.enqueue("scan.image", max_attempts=2)
    (lease,) = await queue.harness.workers.lease(["scan.image"])
    (outcome,) = await queue.harness.workers.fail(
        pb.JobFailure(token=lease.token, category="timeout", code="T", retryable=True)
    )
    assert outcome.job_status == "failed"
    async with queue.harness.app.db.read() as conn:
        count = (
            await conn.execute(
                sa.select(sa.func.count())
                .select_from(_entries)
                .where(_entries.c.tenant_id == queue.harness.tenant)
            )
        ).scalar_one()
    assert count == 0


async def test_a_final_lease_expiry_writes_its_entry(queue: Queue, clock: TestClock) -> None:
    (job,) = await queue.harness.enqueue("render.pdf", max_attempts=1)
    await queue.harness.workers.lease(["render.pdf"], worker_id="w-gone", lease=1)
    clock.advance(2)
    assert queue.harness.app._reaper is not None
    assert await queue.harness.app._reaper.run_once() >= 1
    entry = await queue.entry_of(job.job_id)
    message = "the lease of worker 'w-gone' expired without a completion"
    assert (entry.category, entry.error_code, entry.message, entry.retryable) == (
        "lease",
        "LEASE_EXPIRED",
        message,
        True,
    )
    assert (entry.status, entry.attempts) == ("pending", 1)
    assert await queue.clusters() == {fingerprint("lease", "LEASE_EXPIRED", message): (1, 1, 1)}


async def test_stats_and_summary_cluster_and_order(queue: Queue) -> None:
    await queue.dead_letter(message=TIMEOUT_7)
    await queue.dead_letter(message=TIMEOUT_2)
    await queue.dead_letter(
        category="validation", code="BAD_INPUT", message="field 'x' missing", retryable=False
    )
    await queue.dead_letter(category="dependency", code="HTTP_503", message="upstream 503")
    await queue.dead_letter(category="dependency", code="HTTP_502", message="upstream 502")

    stats = await queue.http.get("/jobengine/deadletter/stats", headers=queue.read)
    assert stats.status_code == 200, stats.text
    assert stats.headers["cache-control"] == "private, max-age=60, stale-if-error=300"
    body = stats.json()
    assert body["totals"] == {"total": "5", "pending": "5", "retryable": "4"}
    assert body["categories"] == [
        {"category": "dependency", "counts": {"total": "2", "pending": "2", "retryable": "2"}},
        {"category": "timeout", "counts": {"total": "2", "pending": "2", "retryable": "2"}},
        {"category": "validation", "counts": {"total": "1", "pending": "1", "retryable": "0"}},
    ]
    timeouts = fingerprint("timeout", "DEADLINE", TIMEOUT_7)
    top = body["topClusters"]
    assert top[0]["fingerprint"] == timeouts
    assert top[0]["sampleMessage"] == TIMEOUT_2  # the latest of the cluster
    assert top[0]["counts"] == {"total": "2", "pending": "2", "retryable": "2"}
    assert len(top) == 4
    singles = sorted(
        fingerprint(*args)
        for args in (
            ("validation", "BAD_INPUT", "field 'x' missing"),
            ("dependency", "HTTP_503", "upstream 503"),
            ("dependency", "HTTP_502", "upstream 502"),
        )
    )
    assert [c["fingerprint"] for c in top[1:]] == singles  # ties: by fingerprint
    assert body["oldestPendingAt"] <= top[0]["lastFailedAt"]
    assert body["oldestPendingAge"].endswith("s")

    summary = await queue.http.get("/jobengine/deadletter/summary", headers=queue.read)
    assert summary.status_code == 200
    groups = [
        (g["category"], g["errorCode"], g["counts"]["total"]) for g in summary.json()["groups"]
    ]
    assert groups == [
        ("dependency", "HTTP_502", "1"),
        ("dependency", "HTTP_503", "1"),
        ("timeout", "DEADLINE", "2"),
        ("validation", "BAD_INPUT", "1"),
    ]
    assert summary.json()["totals"] == {"total": "5", "pending": "5", "retryable": "4"}
    etag = summary.headers["etag"]
    cached = await queue.http.get(
        "/orchestrator/deadletter/summary", headers={**queue.read, "If-None-Match": etag}
    )
    assert cached.status_code == 304
    assert cached.content == b""
    assert cached.headers["deprecation"] == "true"


async def test_replay_enqueues_a_clone_once_and_audits_the_call(queue: Queue) -> None:
    job_id = await queue.dead_letter(priority=7, payload={"image": "a:1"})
    entry = await queue.entry_of(job_id)

    response = await queue.replay_one(entry.entry_id)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    [clone] = await queue.jobs_replaying(job_id)
    assert body == {
        "results": [{"entryId": entry.entry_id, "outcome": "replayed", "jobId": clone.job_id}],
        "replayed": 1,
        "skipped": 0,
        "failed": 0,
    }
    assert (clone.status, clone.attempts, clone.max_attempts, clone.priority) == (
        "queued",
        0,
        1,
        7,
    )
    assert json.loads(clone.payload) == {"image": "a:1"}
    replayed = await queue.entry(entry.entry_id)
    assert (replayed.status, replayed.replay_count, replayed.replay_job_id) == (
        "replayed",
        1,
        clone.job_id,
    )
    print_ = entry.fingerprint
    assert await queue.clusters() == {print_: (1, 0, 0)}

    again = await queue.replay_one(entry.entry_id, prefix="/orchestrator")
    assert again.status_code == 200
    assert again.headers["deprecation"] == "true"
    assert again.json() == {
        "results": [
            {
                "entryId": entry.entry_id,
                "outcome": "skipped",
                "reason": "ALREADY_REPLAYED",
                "message": f"entry is replayed; its replay is job {clone.job_id!r}; only a"
                " pending entry is replayed",
            }
        ],
        "replayed": 0,
        "skipped": 1,
        "failed": 0,
    }
    assert len(await queue.jobs_replaying(job_id)) == 1
    async with queue.harness.app.db.read() as conn:
        audits = (
            await conn.execute(
                sa.select(_audit)
                .where(_audit.c.tenant_id == queue.harness.tenant)
                .where(_audit.c.action == "deadLetterEntries.replay")
                .order_by(_audit.c.created_at)
            )
        ).all()
        events = (
            await conn.execute(
                sa.select(_events.c.type, _events.c.data)
                .where(_events.c.subject == f"jobs/{job_id}")
                .order_by(_events.c.event_id)
            )
        ).all()
    assert len(audits) == 2
    first = audits[0]
    assert first.resource == f"deadLetterEntries/{entry.entry_id}"
    assert (first.reason, first.ticket) == ("outage over", "OPS-3")
    assert (first.backfill_reason, first.backfill_ticket) == ("replay the outage", "INC-9")
    assert json.loads(first.after) == {
        "replayed": [{"entryId": entry.entry_id, "jobId": clone.job_id}],
        "skippedEntryIds": [],
        "failedEntryIds": [],
    }
    assert json.loads(audits[1].after)["skippedEntryIds"] == [entry.entry_id]
    assert events[-1] == (
        "job.replayed",
        json.dumps({"replayJobId": clone.job_id}).replace(" ", ""),
    )


async def test_a_replay_dead_lettered_again_reopens_the_entry_and_a_success_resolves_it(
    queue: Queue,
) -> None:
    job_id = await queue.dead_letter(message=TIMEOUT_7)
    entry = await queue.entry_of(job_id)
    assert (await queue.replay_one(entry.entry_id)).status_code == 200
    [clone] = await queue.jobs_replaying(job_id)

    (lease,) = await queue.harness.workers.lease(["scan.image"])
    assert lease.job.job_id == clone.job_id
    (outcome,) = await queue.harness.workers.fail(
        pb.JobFailure(token=lease.token, category="validation", code="BAD", message="bad row 12")
    )
    assert outcome.job_status == "dead_lettered"
    reopened = await queue.entry(entry.entry_id)
    assert (reopened.status, reopened.job_id, reopened.replay_count) == (
        "pending",
        clone.job_id,
        1,
    )
    assert (reopened.category, reopened.error_code, reopened.retryable) == (
        "validation",
        "BAD",
        False,
    )
    assert aware(reopened.first_failed_at) == aware(entry.first_failed_at)
    assert aware(reopened.last_failed_at) > aware(entry.last_failed_at)
    new_print = fingerprint("validation", "BAD", "bad row 12")
    assert await queue.clusters() == {entry.fingerprint: (0, 0, 0), new_print: (1, 1, 0)}

    assert (await queue.replay_one(entry.entry_id)).status_code == 200
    [second] = await queue.jobs_replaying(clone.job_id)
    (lease,) = await queue.harness.workers.lease(["scan.image"])
    assert lease.job.job_id == second.job_id
    (done,) = await queue.harness.workers.complete((lease.token, {"ok": True}))
    assert done.job_status == "succeeded"
    resolved = await queue.entry(entry.entry_id)
    assert (resolved.status, resolved.replay_count, resolved.replay_job_id) == (
        "resolved",
        2,
        second.job_id,
    )
    skipped = (await queue.replay_one(entry.entry_id)).json()["results"][0]
    assert (skipped["outcome"], skipped["reason"]) == ("skipped", "ALREADY_RESOLVED")
    listed = await queue.http.get(
        "/jobengine/deadletter", params={"status": "resolved"}, headers=queue.read
    )
    assert [i["entryId"] for i in listed.json()["items"]] == [entry.entry_id]
    stats = (await queue.http.get("/jobengine/deadletter/stats", headers=queue.read)).json()
    assert stats["totals"] == {"total": "1", "pending": "0", "retryable": "0"}
    assert "oldestPendingAt" not in stats


async def test_batch_replay_reports_each_id_in_order(queue: Queue, tenant: str) -> None:
    first = await queue.entry_of(await queue.dead_letter())
    second = await queue.entry_of(await queue.dead_letter())
    await queue.replay_one(second.entry_id)
    unknown = str(uuid.uuid4())
    response = await queue.http.post(
        "/jobengine/deadletter/replay/batch",
        json={"entryIds": [first.entry_id, second.entry_id, unknown, first.entry_id]},
        headers=queue.replay,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    [clone] = await queue.jobs_replaying(first.job_id)
    assert body["results"] == [
        {"entryId": first.entry_id, "outcome": "replayed", "jobId": clone.job_id},
        {
            "entryId": second.entry_id,
            "outcome": "skipped",
            "reason": "ALREADY_REPLAYED",
            "message": body["results"][1]["message"],
        },
        {
            "entryId": unknown,
            "outcome": "failed",
            "reason": "DEAD_LETTER_ENTRY_NOT_FOUND",
            "message": f"dead-letter entry {unknown!r} not found",
        },
        {
            "entryId": first.entry_id,
            "outcome": "skipped",
            "reason": "DUPLICATE_ENTRY_ID",
            "message": "entry id named earlier in this call",
        },
    ]
    assert (body["replayed"], body["skipped"], body["failed"]) == (1, 2, 1)
    async with queue.harness.app.db.read() as conn:
        [audit] = (
            await conn.execute(
                sa.select(_audit).where(
                    _audit.c.tenant_id == tenant,
                    _audit.c.action == "deadLetterEntries.batch_replay",
                )
            )
        ).all()
    assert audit.resource == "deadLetterEntries/-"
    assert json.loads(audit.after) == {
        "replayed": [{"entryId": first.entry_id, "jobId": clone.job_id}],
        "skippedEntryIds": [second.entry_id, first.entry_id],
        "failedEntryIds": [unknown],
    }


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"entryIds": []}, "entryIds", "must hold 1 to 500 entry ids, got 0"),
        (
            {"entryIds": [f"e-{i}" for i in range(501)]},
            "entryIds",
            "must hold 1 to 500 entry ids, got 501",
        ),
        (
            {"entryIds": ["ok", "not ok!"]},
            "entryIds[1]",
            "must be 1 to 64 letters, digits, '.', '_', ':' or '-'",
        ),
    ],
    ids=["none", "over-the-cap", "bad-id"],
)
async def test_a_bad_batch_is_400_and_writes_nothing(
    queue: Queue, body: dict[str, Any], field: str, message: str
) -> None:
    entry = await queue.entry_of(await queue.dead_letter())
    if field == "entryIds[1]":
        body = {"entryIds": [entry.entry_id, "not ok!"]}
    response = await queue.http.post(
        "/jobengine/deadletter/replay/batch", json=body, headers=queue.replay
    )
    assert response.status_code == 400
    document = response.json()
    assert document["code"] == "INVALID_ARGUMENT"
    assert document["error"] == f"{field}: {message}"
    assert (await queue.entry(entry.entry_id)).status == "pending"
    async with queue.harness.app.db.read() as conn:
        count = (
            await conn.execute(
                sa.select(sa.func.count())
                .select_from(_audit)
                .where(_audit.c.tenant_id == queue.harness.tenant, _audit.c.action.like("dead%"))
            )
        ).scalar_one()
    assert count == 0


async def test_unknown_and_foreign_entries_are_the_same_404(
    queue: Queue, tokens: TokenFactory
) -> None:
    entry = await queue.entry_of(await queue.dead_letter())
    other = f"t-{uuid.uuid4().hex[:10]}"
    token = await tokens.token(other, ("orch:backfill",), backfill_reason="look around")
    headers = {
        "Authorization": f"Bearer {token}",
        "X-Stella-Tenant": other,
        "X-Stella-Operator-Reason": "probe",
    }
    answers = []
    for entry_id in (entry.entry_id, str(uuid.uuid4())):
        response = await queue.http.post(
            f"/jobengine/deadletter/{entry_id}/replay", json={}, headers=headers
        )
        assert response.status_code == 404
        document = response.json()
        answers.append((document["code"], document["error"].replace(entry_id, "ID")))
    assert answers == [("NOT_FOUND", "dead-letter entry 'ID' not found")] * 2
    assert (await queue.entry(entry.entry_id)).status == "pending"


async def test_replay_pending_sweeps_in_bounded_steps(queue: Queue, app: Application) -> None:
    ids = [await queue.dead_letter("sweep.a") for _ in range(5)]
    await queue.dead_letter("sweep.b")  # another job type: not matched
    entries = [await queue.entry_of(job_id) for job_id in ids]
    # the third entry's job was pruned: it fails and the sweep goes past it
    async with app.db.engine.begin() as conn:
        await conn.execute(sa.delete(_jobs).where(_jobs.c.job_id == ids[2]))
    seen: list[list[str]] = []
    token = ""
    counts = []
    for _ in range(4):
        body: dict[str, Any] = {"jobType": "sweep.a", "limit": 2}
        if token:
            body["continuationToken"] = token
        response = await queue.http.post(
            "/jobengine/deadletter/replay/pending", json=body, headers=queue.replay
        )
        assert response.status_code == 200, response.text
        document = response.json()
        seen.append([r["entryId"] for r in document["results"]])
        counts.append((document["replayed"], document["skipped"], document["failed"]))
        token = document.get("continuationToken", "")
        if not token:
            break
    order = [e.entry_id for e in entries]  # oldest first: the order they failed in
    assert seen == [order[:2], order[2:4], order[4:]]
    assert counts == [(2, 0, 0), (1, 0, 1), (1, 0, 0)]
    pruned = await queue.entry(entries[2].entry_id)
    assert pruned.status == "pending"
    assert [(await queue.entry(e.entry_id)).status for e in entries] == [
        "replayed",
        "replayed",
        "pending",
        "replayed",
        "replayed",
    ]
    # a new sweep tries the pruned one again, and fails it again, honestly
    again = await queue.http.post(
        "/jobengine/deadletter/replay/pending", json={"jobType": "sweep.a"}, headers=queue.replay
    )
    assert again.json()["results"] == [
        {
            "entryId": entries[2].entry_id,
            "outcome": "failed",
            "reason": "JOB_PRUNED",
            "message": f"job {ids[2]!r} was pruned after the retention period; it cannot be"
            " replayed",
        }
    ]
    assert "continuationToken" not in again.json()


async def test_replay_pending_refuses_bad_filters_and_tokens(queue: Queue) -> None:
    cases = [
        ({"limit": -1}, "limit"),
        ({"category": "Not A Slug"}, "category"),
        ({"fingerprint": "xyz"}, "fingerprint"),
        ({"jobType": "BAD TYPE"}, "jobType"),
        (
            {"failedAfter": "2026-11-30T10:00:00Z", "failedBefore": "2026-11-30T09:00:00Z"},
            "failedBefore",
        ),
        ({"continuationToken": "forged.token"}, "continuationToken"),
    ]
    for body, field in cases:
        response = await queue.http.post(
            "/jobengine/deadletter/replay/pending", json=body, headers=queue.replay
        )
        assert response.status_code == 400, (body, response.text)
        fields = [
            v["field"]
            for d in response.json()["details"]
            if d["@type"].endswith("BadRequest")
            for v in d["fieldViolations"]
        ]
        assert fields == [field], body
    # a token of one sweep is refused for another filter
    for _ in range(2):
        await queue.dead_letter("tok.a")
    first = await queue.http.post(
        "/jobengine/deadletter/replay/pending",
        json={"jobType": "tok.a", "limit": 1},
        headers=queue.replay,
    )
    token = first.json()["continuationToken"]
    other = await queue.http.post(
        "/jobengine/deadletter/replay/pending",
        json={"jobType": "tok.b", "continuationToken": token},
        headers=queue.replay,
    )
    assert other.status_code == 400
    assert "was issued for a different tenant, filter or sort" in other.json()["error"]


async def test_replays_need_the_backfill_scope_and_a_reason(queue: Queue) -> None:
    entry = await queue.entry_of(await queue.dead_letter())
    operate = await queue.http.post(
        f"/jobengine/deadletter/{entry.entry_id}/replay",
        json={},
        headers={**queue.read, "X-Stella-Operator-Reason": "x"},
    )
    assert operate.status_code == 403
    no_reason = {k: v for k, v in queue.replay.items() if k != "X-Stella-Operator-Reason"}
    missing = await queue.http.post(
        f"/jobengine/deadletter/{entry.entry_id}/replay", json={}, headers=no_reason
    )
    assert missing.status_code == 400
    assert (await queue.entry(entry.entry_id)).status == "pending"


async def test_a_dead_lettered_job_is_replayed_only_through_its_entry(queue: Queue) -> None:
    """ReplayJob (orch:operate) refuses a dead-lettered job: a clone made there would
    leave the entry pending, so the failure could be replayed twice, the second time
    through the entry, and without the backfill scope the first time. Nothing is
    written; the entry's replay then works as ever."""
    job_id = await queue.dead_letter()
    entry = await queue.entry_of(job_id)
    headers = {**queue.read, "X-Stella-Operator-Reason": "retry it"}
    refused = await queue.http.post(f"/jobengine/jobs/{job_id}/replay", json={}, headers=headers)
    assert refused.status_code == 409, refused.text
    body = refused.json()
    assert (body["code"], body["error"]) == (
        "FAILED_PRECONDITION",
        f"job is dead_lettered; replay its dead-letter entry {entry.entry_id!r} instead (scope"
        " orch:backfill), which records the replay so one failure is never replayed twice",
    )
    assert body["details"][0]["reason"] == "JOB_DEAD_LETTERED"
    assert body["details"][0]["metadata"] == {
        "status": "dead_lettered",
        "action": "replay",
        "entryId": entry.entry_id,
    }
    assert await queue.jobs_replaying(job_id) == []
    unchanged = await queue.entry(entry.entry_id)
    assert (unchanged.status, unchanged.replay_count) == ("pending", 0)
    with pytest.raises(ApiError) as err:
        await queue.harness.jobs.replay_job(job_id)
    assert (err.value.code, err.value.reason) == ("FAILED_PRECONDITION", "JOB_DEAD_LETTERED")
    replayed = await queue.replay_one(entry.entry_id)
    assert replayed.status_code == 200, replayed.text
    [clone] = await queue.jobs_replaying(job_id)
    assert replayed.json()["results"] == [
        {"entryId": entry.entry_id, "outcome": "replayed", "jobId": clone.job_id}
    ]


async def test_an_older_job_of_a_replayed_chain_names_the_chains_entry(queue: Queue) -> None:
    """The entry names the chain's latest failure (the replay's clone, dead-lettered
    again); ReplayJob of the first job still names the entry, found along the
    job.replayed events (critic finding)."""
    job_id = await queue.dead_letter()
    entry = await queue.entry_of(job_id)
    assert (await queue.replay_one(entry.entry_id)).status_code == 200
    [clone] = await queue.jobs_replaying(job_id)
    (lease,) = await queue.harness.workers.lease(["scan.image"])
    assert lease.job.job_id == clone.job_id
    failure = pb.JobFailure(
        token=lease.token, category="timeout", code="DEADLINE", message=TIMEOUT_7
    )
    (outcome,) = await queue.harness.workers.fail(failure)
    assert outcome.job_status == "dead_lettered"
    moved = await queue.entry(entry.entry_id)
    assert (moved.status, moved.job_id, moved.replay_count) == ("pending", clone.job_id, 1)
    headers = {**queue.read, "X-Stella-Operator-Reason": "retry it"}
    for dead in (job_id, clone.job_id):
        refused = await queue.http.post(f"/jobengine/jobs/{dead}/replay", json={}, headers=headers)
        assert refused.status_code == 409, refused.text
        assert refused.json()["details"][0]["metadata"] == {
            "status": "dead_lettered",
            "action": "replay",
            "entryId": entry.entry_id,
        }


async def test_concurrent_replays_of_one_entry_enqueue_one_job(queue: Queue) -> None:
    job_id = await queue.dead_letter()
    entry = await queue.entry_of(job_id)
    other = await queue.entry_of(await queue.dead_letter())
    calls = [queue.replay_one(entry.entry_id) for _ in range(6)]
    calls.append(
        queue.http.post(
            "/jobengine/deadletter/replay/batch",
            json={"entryIds": [other.entry_id, entry.entry_id]},
            headers=queue.replay,
        )
    )
    calls.append(
        queue.http.post(
            "/jobengine/deadletter/replay/pending",
            json={"jobType": "scan.image"},
            headers=queue.replay,
        )
    )
    responses = await asyncio.gather(*calls)
    assert [r.status_code for r in responses] == [200] * 8

    def outcomes(answers: list[httpx.Response]) -> list[str]:
        return [
            result["outcome"]
            for r in answers
            for result in r.json()["results"]
            if result["entryId"] == entry.entry_id
        ]

    # The six single replays and the batch name the entry whatever the order; the
    # pending sweep names it only when it read it still pending (a replay that
    # committed first took it out of the pending set). Exactly one call replays it.
    named, swept = outcomes(responses[:7]), outcomes(responses[7:])
    assert len(named) == 7 and len(swept) <= 1, (named, swept)
    assert sorted(named + swept) == ["replayed"] + ["skipped"] * (len(named) + len(swept) - 1)
    assert len(await queue.jobs_replaying(job_id)) == 1
    assert len(await queue.jobs_replaying(other.job_id)) == 1
    assert (await queue.entry(entry.entry_id)).replay_count == 1
    assert await queue.clusters() == {entry.fingerprint: (2, 0, 0)}


async def test_listing_filters_and_pages_newest_first(queue: Queue) -> None:
    ids = [await queue.dead_letter("list.a") for _ in range(3)]
    await queue.dead_letter("list.b", category="validation", code="BAD", message="no")
    entries = [await queue.entry_of(job_id) for job_id in ids]
    first = await queue.http.get(
        "/jobengine/deadletter", params={"jobType": "list.a", "limit": 2}, headers=queue.read
    )
    assert first.status_code == 200
    page = first.json()
    assert [i["entryId"] for i in page["items"]] == [entries[2].entry_id, entries[1].entry_id]
    second = await queue.http.get(
        "/orchestrator/deadletter",
        params={"jobType": "list.a", "limit": 2, "continuationToken": page["continuationToken"]},
        headers=queue.read,
    )
    assert [i["entryId"] for i in second.json()["items"]] == [entries[0].entry_id]
    assert "continuationToken" not in second.json()
    validation = await queue.http.get(
        "/jobengine/deadletter",
        params={"category": "validation", "errorCode": "BAD"},
        headers=queue.read,
    )
    assert [i["jobType"] for i in validation.json()["items"]] == ["list.b"]
    by_print = await queue.http.get(
        "/jobengine/deadletter",
        params={"fingerprint": entries[0].fingerprint, "status": "pending"},
        headers=queue.read,
    )
    assert len(by_print.json()["items"]) == 3
    bad = await queue.http.get(
        "/jobengine/deadletter", params={"status": "gone"}, headers=queue.read
    )
    assert bad.status_code == 400
    assert bad.json()["error"] == ("status: must be one of pending, replayed, resolved, got 'gone'")

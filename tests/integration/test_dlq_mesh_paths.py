"""The dead-letter queue under the mesh API's root paths (issue 13 point 3) on SQLite
and PostgreSQL: GET /infrastructure/dlq/stats and POST /infrastructure/dlq/retry are
additional bindings of DeadLetterService's GetDeadLetterStats and
ReplayPendingDeadLetterEntries, so they answer what /jobengine answers, with the same
policy and the same audit entry."""

from __future__ import annotations

import json
import uuid

import sqlalchemy as sa

from server.storage.tables import AuditEntryRow, table_of
from tests.integration.test_deadletter import TIMEOUT_7, Queue, queue  # noqa: F401
from tests.support.auth import TokenFactory

_audit = table_of(AuditEntryRow)


async def test_stats_are_the_same_under_both_paths(
    queue: Queue,  # noqa: F811
    tokens: TokenFactory,
) -> None:
    await queue.dead_letter(message=TIMEOUT_7)
    await queue.dead_letter(category="validation", code="BAD", message="x", retryable=False)
    canonical = await queue.http.get("/jobengine/deadletter/stats", headers=queue.read)
    mesh = await queue.http.get("/infrastructure/dlq/stats", headers=queue.read)
    assert canonical.status_code == mesh.status_code == 200, mesh.text
    assert mesh.content == canonical.content  # byte for byte: one method, two paths
    assert mesh.json()["totals"] == {"total": "2", "pending": "2", "retryable": "1"}
    assert mesh.headers["etag"] == canonical.headers["etag"]
    assert mesh.headers["cache-control"] == "private, max-age=60, stale-if-error=300"
    assert "deprecation" not in mesh.headers  # a root path, not a legacy twin
    cached = await queue.http.get(
        "/infrastructure/dlq/stats", headers={**queue.read, "If-None-Match": mesh.headers["etag"]}
    )
    assert cached.status_code == 304
    legacy_twin = await queue.http.get("/orchestrator/infrastructure/dlq/stats", headers=queue.read)
    assert legacy_twin.status_code == 404
    other = f"t-{uuid.uuid4().hex[:10]}"
    other_token = await tokens.token(other)
    elsewhere = await queue.http.get(
        "/infrastructure/dlq/stats",
        headers={"Authorization": f"Bearer {other_token}", "X-Stella-Tenant": other},
    )
    assert elsewhere.status_code == 200  # another tenant sees its own (empty) queue
    assert elsewhere.json()["totals"] == {"total": "0", "pending": "0", "retryable": "0"}


async def test_retry_through_the_mesh_path_requeues_and_audits_once(
    queue: Queue,  # noqa: F811
) -> None:
    job_type = f"mesh.retry-{uuid.uuid4().hex[:6]}"
    job_id = await queue.dead_letter(job_type, payload={"n": 1})
    entry = await queue.entry_of(job_id)
    trace = f"dlq-retry-{uuid.uuid4().hex}"

    no_reason = {k: v for k, v in queue.replay.items() if k != "X-Stella-Operator-Reason"}
    refused = await queue.http.post("/infrastructure/dlq/retry", json={}, headers=no_reason)
    assert refused.status_code == 400, refused.text
    read_only = await queue.http.post(
        "/infrastructure/dlq/retry",
        json={},
        headers={**queue.read, "X-Stella-Operator-Reason": "r"},
    )
    assert read_only.status_code == 403, read_only.text  # orch:backfill, as /jobengine

    response = await queue.http.post(
        "/infrastructure/dlq/retry",
        json={"jobType": job_type},
        headers={**queue.replay, "X-Stella-Trace-Id": trace},
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    [clone] = await queue.jobs_replaying(job_id)
    assert response.json() == {
        "results": [{"entryId": entry.entry_id, "outcome": "replayed", "jobId": clone.job_id}],
        "replayed": 1,
        "skipped": 0,
        "failed": 0,
    }
    assert (clone.status, clone.job_type, clone.attempts, json.loads(clone.payload)) == (
        "queued",
        job_type,
        0,
        {"n": 1},
    )
    replayed = await queue.entry(entry.entry_id)
    assert (replayed.status, replayed.replay_job_id) == ("replayed", clone.job_id)
    async with queue.harness.app.db.read() as conn:
        audits = (await conn.execute(sa.select(_audit).where(_audit.c.trace_id == trace))).all()
    [audit] = audits
    assert (audit.tenant_id, audit.action, audit.resource) == (
        queue.harness.tenant,
        "deadLetterEntries.replay_pending",
        "deadLetterEntries/-",
    )
    assert (audit.reason, audit.ticket) == ("outage over", "OPS-3")
    assert (audit.backfill_reason, audit.backfill_ticket) == ("replay the outage", "INC-9")
    assert json.loads(audit.after)["replayed"] == [
        {"entryId": entry.entry_id, "jobId": clone.job_id}
    ]

    # the re-queued job is a real job: a worker leases and completes it
    (lease,) = await queue.harness.workers.lease([job_type])
    assert lease.job.job_id == clone.job_id
    (done,) = await queue.harness.workers.complete((lease.token, None))
    assert done.job_status == "succeeded"
    assert (await queue.entry(entry.entry_id)).status == "resolved"

    # retrying again finds nothing pending: an honest zero, under either path
    again = await queue.http.post("/infrastructure/dlq/retry", json={}, headers=queue.replay)
    canonical = await queue.http.post(
        "/jobengine/deadletter/replay/pending", json={}, headers=queue.replay
    )
    nothing = {"results": [], "replayed": 0, "skipped": 0, "failed": 0}
    assert again.json() == canonical.json() == nothing

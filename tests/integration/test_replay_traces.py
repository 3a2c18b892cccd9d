"""A replayed job is in the replaying call's trace (critic finding 4's job half): the
clone of a dead-lettered job replayed from the dead-letter queue, or of a succeeded
job replayed by ReplayJob (which refuses dead-lettered ones), stores the replaying
call's trace id, its job.enqueued event carries it, and so do its lease and completion
events, not the worker's calls. On the session's real server (SQLite file and
PostgreSQL), the worker over real gRPC."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from server.storage.tables import EventRow, table_of
from tests.integration.test_deadletter import Queue, queue  # noqa: F401 (the fixture)

_events = table_of(EventRow)


async def _history(q: Queue, job_id: str) -> list[tuple[str, str | None]]:
    async with q.harness.app.db.read() as conn:
        rows = await conn.execute(
            sa.select(_events.c.type, _events.c.trace_id)
            .where(_events.c.subject == f"jobs/{job_id}")
            .order_by(_events.c.event_id)
        )
        return [(row.type, row.trace_id) for row in rows]


async def _work(q: Queue, job_id: str, job_type: str) -> None:
    (lease,) = await q.harness.workers.lease([job_type])
    assert lease.job.job_id == job_id
    (outcome,) = await q.harness.workers.complete((lease.token, None))
    assert outcome.job_status == "succeeded"


async def test_replays_are_in_the_replaying_calls_trace(queue: Queue) -> None:  # noqa: F811
    for path in ("deadletter", "jobs"):
        if path == "deadletter":
            job_id = await queue.dead_letter("scan.image")
        else:
            (job,) = await queue.harness.enqueue("scan.image")
            job_id = str(job.job_id)
            await _work(queue, job_id, "scan.image")
        trace = f"replay-{uuid.uuid4().hex[:8]}"
        headers = {**queue.replay, "X-Stella-Trace-Id": trace}
        if path == "deadletter":
            entry = await queue.entry_of(job_id)
            response = await queue.http.post(
                f"/jobengine/deadletter/{entry.entry_id}/replay", json={}, headers=headers
            )
            assert response.status_code == 200, response.text
        else:
            headers["Authorization"] = queue.read["Authorization"]  # orch:operate
            response = await queue.http.post(
                f"/jobengine/jobs/{job_id}/replay", json={}, headers=headers
            )
            assert response.status_code == 201, response.text
        (clone,) = await queue.jobs_replaying(job_id)
        assert clone.trace_id == trace, path
        await _work(queue, clone.job_id, "scan.image")
        assert await _history(queue, clone.job_id) == [
            ("job.enqueued", trace),
            ("job.leased", trace),
            ("job.succeeded", trace),
        ], path

"""The completion statement's plan on PostgreSQL (server/storage/repositories/leases.py)
once the server's prepared statement runs its generic plan: every jobs row it reads or
updates is found through the primary key.

Why a plan test: asyncpg prepares each statement, and after five executions PostgreSQL
may keep a generic plan that guesses 10 tokens and takes the statistics' word for how
many jobs are leased. When those statistics were taken with few jobs leased, the former
statement (the tokens joined plainly to `jobs`) scanned every entry of the leased-jobs
index and of the tenant's jobs instead: bench/jobs.py's one-job completions went from
~2 ms to ~30 ms (5,500 buffers each) after the batched phase, and unbatched throughput
from ~320 to ~120 jobs/s. The plan is read with EXPLAIN, so nothing runs."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from server.storage.repositories.leases import _PG_COMPLETE
from tests.support.fleet import plain_dsn
from tests.support.migrations import migrated

pytestmark = pytest.mark.postgres

_PARAMETERS = ("job_ids", "lease_ids", "attempts", "results", "tenant_id", "now", "trace_id")
_TYPES = "text[], text[], int[], text[], text, timestamptz, text"


def _positional(sql: str) -> str:
    """The statement with `$n` for its named parameters (`::` casts left alone)."""
    for number, name in enumerate(_PARAMETERS, start=1):
        sql = re.sub(rf"(?<![:\w]):{name}\b", f"${number}", sql)
    return sql


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from _nodes(child)


async def test_completion_reads_and_updates_jobs_by_primary_key(tmp_path: Path) -> None:
    async with migrated("postgres", tmp_path) as db:
        conn = await asyncpg.connect(plain_dsn(db.url.render_as_string(hide_password=False)))
        try:
            # 20,000 finished jobs and three leased: the statistics of a server whose
            # leases come and go, taken while few were out.
            await conn.execute(
                """
                INSERT INTO jobs (job_id, tenant_id, job_type, source_id, status, priority,
                    payload, attempts, max_attempts, backoff_initial_s, backoff_max_s,
                    backoff_multiplier, backoff_jitter, run_at, created_at, updated_at,
                    finished_at, lease_id, lease_expires_at)
                SELECT 'job-' || lpad(i::text, 8, '0'), 't-1', 'scan', 's-1',
                       CASE WHEN i <= 3 THEN 'leased' ELSE 'succeeded' END, 0, '{}', 1, 3,
                       1.0, 300.0, 2.0, 0.5, now(), now(), now(),
                       CASE WHEN i <= 3 THEN NULL ELSE now() END,
                       CASE WHEN i <= 3 THEN 'lease-' || i END,
                       CASE WHEN i <= 3 THEN now() + interval '30 seconds' END
                FROM generate_series(1, 20000) AS i
                """
            )
            await conn.execute("ANALYZE jobs")
            await conn.execute("SET plan_cache_mode = force_generic_plan")
            await conn.execute(f"PREPARE complete({_TYPES}) AS {_positional(_PG_COMPLETE.text)}")
            explained = await conn.fetchval(
                "EXPLAIN (FORMAT JSON) EXECUTE complete("
                "ARRAY['job-00000001'], ARRAY['lease-1'], ARRAY[1], ARRAY['{}'], 't-1', now(),"
                " NULL)"
            )
        finally:
            await conn.close()
    [document] = json.loads(explained)
    on_jobs = [
        (node["Node Type"], node.get("Index Name"))
        for node in _nodes(document["Plan"])
        if node.get("Relation Name") == "jobs" and node["Node Type"] != "ModifyTable"
    ]
    assert on_jobs == [("Index Scan", "jobs_pkey"), ("Index Scan", "jobs_pkey")]

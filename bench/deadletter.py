"""The dead-letter queue at size (issue 10 point 8), on PostgreSQL.

Starts `orchestrator serve` in a child process on a new PostgreSQL database (created
on the shared server, dropped at the end) and seeds it straight in the database, with
one `INSERT .. SELECT generate_series` per table:

- `--entries` dead-letter entries in one tenant (1,000,000; `--quick` 100,000) over
  200 error clusters in 5 categories, `--replay` of them pending (100,000; `--quick`
  10,000) with their dead-lettered jobs, the others replayed or resolved, and the
  cluster counters they imply (one `INSERT .. SELECT .. GROUP BY`);

then measures, with real bearer tokens over loopback HTTP (the gateway in front of
the server, as a console calls it):

- stats: `GET /jobengine/deadletter/stats` p50/p99 over `--requests` calls, one in
  flight, each with a fresh request (no If-None-Match); target p50 <= 50 ms at
  1,000,000 entries. Also `GET /jobengine/deadletter/summary`.
- replay-pending: `POST /jobengine/deadletter/replay/pending` with `limit` 1,000 (the
  server's maximum per call), following the continuation token until no pending
  entry is left: entries/s over the whole sweep (each call clones its entries' jobs,
  writes their events, claims the entries, moves the counters and writes one audit
  entry, in one transaction); target >= 5,000 entries/s.

A table, or `--json` for one object. Run it under the shared heavy-work lock:

    flock /tmp/coord/heavy.lock .venv/bin/python bench/deadletter.py [--quick] [--json]
        [--pg-url postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import sqlalchemy as sa
from _shared import ServerProcess, p50_p99

from server.identity.authorization_server import clients
from server.storage.db import Database
from server.storage.tables import SourceRow, TenantRow, table_of

TENANT = "bench"
JOB_TYPE = "bench.replay"
CLUSTERS = 200
CATEGORIES = ("dependency", "lease", "timeout", "validation", "worker")
REPLAY_LIMIT = 1000
TARGETS = {"stats_p50_ms": "<= 50", "replay_entries_per_s": ">= 5000"}


def _dsn(url: str) -> str:
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def prepare(url: str) -> tuple[str, str, str]:
    """Schema, tenant, an enabled source and a client with orch:operate and
    orch:backfill: the source id, client id and secret."""
    db = Database(url)
    await db.migrate()
    async with db.transaction() as session:
        session.add(TenantRow(tenant_id=TENANT, display_name=TENANT))
    created = await clients.create_client(
        db, scopes=["orch:operate", "orch:backfill"], tenant=TENANT
    )
    source_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    async with db.engine.begin() as conn:
        await conn.execute(
            sa.insert(table_of(SourceRow)).values(
                source_id=source_id,
                tenant_id=TENANT,
                name="bench",
                source_type="manual",
                enabled=True,
                paused=False,
                created_at=now,
                updated_at=now,
            )
        )
    await db.dispose()
    return source_id, created.client.client_id, created.client_secret


# Entry i (1-based) is of cluster i % CLUSTERS, category CATEGORIES[cluster % 5]; the
# first `pending` entries are pending, with a dead-lettered job each; the others are
# replayed (even i) or resolved (odd i) and their jobs were pruned long ago.
_SEED_JOBS = """
INSERT INTO jobs (job_id, tenant_id, job_type, source_id, status, priority, payload,
    attempts, max_attempts, backoff_initial_s, backoff_max_s, backoff_multiplier,
    backoff_jitter, run_at, created_at, updated_at, finished_at, last_error)
SELECT 'job-' || lpad(i::text, 10, '0'), $2, $3, $4, 'dead_lettered', 0,
       '{"n":' || i || '}', 3, 3, 1.0, 300.0, 2.0, 0.2, t, t, t, t, '{}'
FROM generate_series(1, $1::int) AS i,
     LATERAL (SELECT now() - interval '1 hour' + i * interval '1 millisecond' AS t) AS x
"""
_SEED_ENTRIES = """
INSERT INTO deadletter_entries (entry_id, tenant_id, project_id, job_id, job_type,
    source_id, category, error_code, message, fingerprint, retryable, attempts, status,
    first_failed_at, last_failed_at, replay_count, replay_job_id, updated_at)
SELECT 'entry-' || lpad(i::text, 10, '0'), $2, NULL, 'job-' || lpad(i::text, 10, '0'),
       $3, $4, ($5::text[])[1 + (i % $6) % 5], 'CODE_' || (i % $6),
       'failure ' || (i % $6) || ' after ' || i || ' ms on host-' || (i % 7),
       left(md5('cluster-' || (i % $6)), 16), (i % 3) <> 0, 3,
       CASE WHEN i <= $7 THEN 'pending' WHEN i % 2 = 0 THEN 'replayed' ELSE 'resolved' END,
       t, t, CASE WHEN i <= $7 THEN 0 ELSE 1 END,
       CASE WHEN i <= $7 THEN NULL ELSE 'gone-' || i END, t
FROM generate_series(1, $1::int) AS i,
     LATERAL (SELECT now() - interval '1 hour' + i * interval '1 millisecond' AS t) AS x
"""
_SEED_CLUSTERS = """
INSERT INTO deadletter_clusters (tenant_id, project_key, fingerprint, category,
    error_code, sample_message, total, pending, retryable, last_failed_at)
SELECT tenant_id, '', fingerprint, min(category), min(error_code), max(message),
       count(*), count(*) FILTER (WHERE status = 'pending'),
       count(*) FILTER (WHERE status = 'pending' AND retryable), max(last_failed_at)
FROM deadletter_entries WHERE tenant_id = $1
GROUP BY tenant_id, fingerprint
"""


async def seed(url: str, source_id: str, entries: int, pending: int) -> float:
    """Seed the jobs, entries and counters; the seconds it took."""
    started = time.perf_counter()
    conn = await asyncpg.connect(_dsn(url))
    try:
        await conn.execute(_SEED_JOBS, pending, TENANT, JOB_TYPE, source_id)
        await conn.execute(
            _SEED_ENTRIES,
            entries,
            TENANT,
            JOB_TYPE,
            source_id,
            list(CATEGORIES),
            CLUSTERS,
            pending,
        )
        await conn.execute(_SEED_CLUSTERS, TENANT)
        for table in ("jobs", "deadletter_entries", "deadletter_clusters"):
            await conn.execute(f"VACUUM ANALYZE {table}")
    finally:
        await conn.close()
    return time.perf_counter() - started


async def token(http: httpx.AsyncClient, client_id: str, secret: str, scope: str) -> str:
    form = {"grant_type": "client_credentials", "scope": scope}
    if scope == "orch:backfill":
        form |= {"backfill_reason": "bench replay", "backfill_ticket": "BENCH-1"}
    response = await http.post("/oauth/token", data=form, auth=(client_id, secret))
    response.raise_for_status()
    return str(response.json()["access_token"])


async def timed_gets(
    http: httpx.AsyncClient, path: str, headers: dict[str, str], n: int
) -> list[float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        response = await http.get(path, headers=headers)
        samples.append(time.perf_counter() - started)
        response.raise_for_status()
    return samples


async def replay_all(http: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, float]:
    """Sweep every pending entry of the job type; totals and timings."""
    replayed = failed = skipped = calls = 0
    body: dict[str, Any] = {"jobType": JOB_TYPE, "limit": REPLAY_LIMIT}
    per_call = []
    started = time.perf_counter()
    while True:
        call_started = time.perf_counter()
        response = await http.post(
            "/jobengine/deadletter/replay/pending", json=body, headers=headers
        )
        per_call.append(time.perf_counter() - call_started)
        response.raise_for_status()
        document = response.json()
        calls += 1
        replayed += document["replayed"]
        skipped += document["skipped"]
        failed += document["failed"]
        token = document.get("continuationToken")
        if not token:
            break
        body["continuationToken"] = token
    elapsed = time.perf_counter() - started
    p50, p99 = p50_p99(per_call) if len(per_call) > 1 else (per_call[0] * 1000,) * 2
    return {
        "replayed": replayed,
        "skipped": skipped,
        "failed": failed,
        "calls": calls,
        "seconds": round(elapsed, 2),
        "replay_entries_per_s": round(replayed / elapsed),
        "replay_call_p50_ms": round(p50, 1),
        "replay_call_p99_ms": round(p99, 1),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    entries = args.entries or (100_000 if args.quick else 1_000_000)
    pending = args.replay or (10_000 if args.quick else 100_000)
    requests = args.requests or (50 if args.quick else 200)
    name = f"bench_deadletter_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(_dsn(args.pg_url))
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = sa.make_url(args.pg_url).set(drivername="postgresql+asyncpg", database=name)
    db_url = url.render_as_string(hide_password=False)
    result: dict[str, Any] = {"entries": entries, "pending": pending}
    server: ServerProcess | None = None
    try:
        source_id, client_id, secret = await prepare(db_url)
        result["seed_seconds"] = round(await seed(db_url, source_id, entries, pending), 1)
        with tempfile.TemporaryDirectory() as workdir:
            server = ServerProcess(
                db_url,
                Path(workdir),
                env={"DEADLETTER_REPLAY_PENDING_MAX": str(REPLAY_LIMIT)},
                profile=args.profile,
            )
            async with httpx.AsyncClient(base_url=server.base, timeout=600) as http:
                operate = await token(http, client_id, secret, "orch:operate")
                backfill = await token(http, client_id, secret, "orch:backfill")
                read = {"Authorization": f"Bearer {operate}", "X-Stella-Tenant": TENANT}
                await timed_gets(http, "/jobengine/deadletter/stats", read, 5)  # warm up
                stats = await timed_gets(http, "/jobengine/deadletter/stats", read, requests)
                summary = await timed_gets(http, "/jobengine/deadletter/summary", read, requests)
                document = (await http.get("/jobengine/deadletter/stats", headers=read)).json()
                assert document["totals"]["total"] == str(entries), document["totals"]
                assert document["totals"]["pending"] == str(pending), document["totals"]
                p50, p99 = p50_p99(stats)
                result |= {"stats_p50_ms": round(p50, 2), "stats_p99_ms": round(p99, 2)}
                p50, p99 = p50_p99(summary)
                result |= {"summary_p50_ms": round(p50, 2), "summary_p99_ms": round(p99, 2)}
                replay = {
                    "Authorization": f"Bearer {backfill}",
                    "X-Stella-Tenant": TENANT,
                    "X-Stella-Operator-Reason": "bench",
                }
                cpu = server.cpu_seconds()
                result |= await replay_all(http, replay)
                result["replay_server_cpu_s"] = round(server.cpu_seconds() - cpu, 1)
                after = (await http.get("/jobengine/deadletter/stats", headers=read)).json()
                assert after["totals"]["pending"] == "0", after["totals"]
    finally:
        if server is not None:
            server.stop()
        admin = await asyncpg.connect(_dsn(args.pg_url))
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    return result


def table(result: dict[str, Any]) -> str:
    lines = [f"{'figure':<26} {'value':>12}  target"]
    for key, value in result.items():
        lines.append(f"{key:<26} {value!s:>12}  {TARGETS.get(key, '')}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="100,000 entries, 10,000 replayed")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get(
            "ORCHESTRATOR_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="PostgreSQL server to create the bench database on (env ORCHESTRATOR_BENCH_PG_URL)",
    )
    parser.add_argument("--entries", type=int, default=0, help="entries seeded (stats)")
    parser.add_argument("--replay", type=int, default=0, help="pending entries replayed")
    parser.add_argument("--requests", type=int, default=0, help="stats/summary calls timed")
    parser.add_argument("--profile", default="", help="write the server's cProfile stats here")
    args = parser.parse_args()
    if args.replay > (args.entries or (100_000 if args.quick else 1_000_000)):
        parser.error("--replay must not exceed --entries")
    result = asyncio.run(run(args))
    print(json.dumps(result) if args.json else table(result))


if __name__ == "__main__":
    main()

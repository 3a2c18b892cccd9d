"""Schedules across replicas (issue 10 point 5; DESIGN §9): two `orchestrator serve`
processes on one fresh PostgreSQL database, each running its scheduler loop every 50 ms,
fire an every-second schedule: every tick is enqueued exactly once (one job per event
time, none missing between the first and the last); then, with both stopped and the
schedules left due an hour ago (as after an hour of downtime), one server restarted
catches up by each source's misfire policy: `skip` enqueues nothing for the missed
ticks, `run_once` exactly one job, for the latest missed tick.

Kind: an end-to-end invariant over real processes; nothing in-process, nothing mocked.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.support.fleet import Server, fresh_database, plain_dsn, wait_for
from tests.support.process import base_env

pytestmark = pytest.mark.postgres
PUBLIC_URL = "http://127.0.0.1:18097"
GRACE = timedelta(seconds=1)


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with fresh_database("orch_schedules") as url:
        yield url


async def _register(server: Server, name: str, cron: str, policy: str) -> str:
    credentials = server.served.credentials
    assert credentials is not None
    async with httpx.AsyncClient(base_url=server.served.base, timeout=30) as http:
        token = await http.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, auth=credentials
        )
        assert token.status_code == 200, token.text
        headers = {
            "Authorization": f"Bearer {token.json()['access_token']}",
            "X-Stella-Operator-Reason": "replica test",
        }
        body = {
            "name": name,
            "sourceType": "scheduler",
            "schedule": {"cron": cron, "misfirePolicy": policy, "jobTemplate": {"jobType": name}},
        }
        response = await http.post("/jobengine/sources", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["sourceId"])


async def _event_times(url: str, source_id: str) -> list[datetime]:
    conn = await asyncpg.connect(plain_dsn(url), timeout=10)
    try:
        rows = await conn.fetch(
            "SELECT event_time FROM jobs WHERE source_id = $1 ORDER BY event_time", source_id
        )
    finally:
        await conn.close()
    return [row["event_time"] for row in rows]


async def _execute(url: str, statement: str, *args: Any) -> None:
    conn = await asyncpg.connect(plain_dsn(url), timeout=10)
    try:
        await conn.execute(statement, *args)
    finally:
        await conn.close()


async def test_two_replicas_enqueue_every_tick_once_and_a_restart_catches_up(
    pg_url: str, tmp_path: Path
) -> None:
    env = base_env(
        tmp_path,
        ORCHESTRATOR_DATABASE_URL=pg_url,
        ORCHESTRATOR_PUBLIC_URL=PUBLIC_URL,
        SCHEDULER_INTERVAL_SECONDS="0.05",
        SCHEDULE_MISFIRE_GRACE_SECONDS=str(int(GRACE.total_seconds())),
    )
    (tmp_path / "server").mkdir()
    first = Server(env, tmp_path / "server", dev=True)
    servers = [first]
    try:
        servers.append(Server(env, tmp_path / "server", dev=False))
        every_second = await _register(first, "every-second", "* * * * * *", "skip")
        skipping = await _register(first, "skipping", "* * * * *", "skip")
        once = await _register(first, "once", "* * * * *", "run_once")

        async def enough() -> bool:
            return len(await _event_times(pg_url, every_second)) >= 6

        await wait_for(enough, "six ticks of the every-second schedule", timeout=30)
        assert all(server.alive() for server in servers)
        for server in servers:
            assert server.stop() == 0
        ticks = await _event_times(pg_url, every_second)
        assert [t for t, n in Counter(ticks).items() if n > 1] == []
        span = int((ticks[-1] - ticks[0]).total_seconds())
        assert ticks == [ticks[0] + timedelta(seconds=i) for i in range(span + 1)]

        # An hour of downtime: the minutely schedules were due an hour ago (and the jobs
        # of the minute ticks that did run are gone, so a catch-up job cannot be one).
        await _execute(
            pg_url,
            "UPDATE schedules SET next_run_at = now() - interval '1 hour' "
            "WHERE source_id = ANY($1::text[])",
            [skipping, once],
        )
        await _execute(
            pg_url, "DELETE FROM jobs WHERE source_id = ANY($1::text[])", [skipping, once]
        )
        restarted_at = datetime.now(UTC)
        servers.append(Server(env, tmp_path / "server", dev=False))

        async def caught_up() -> bool:
            return len(await _event_times(pg_url, once)) > 0

        await wait_for(caught_up, "the run_once catch-up job", timeout=30)
        await asyncio.sleep(0.5)
        assert servers[-1].stop() == 0
        cutoff = datetime.now(UTC) - GRACE
        skipped = await _event_times(pg_url, skipping)
        caught = await _event_times(pg_url, once)
        # skip: no job for a missed tick (a minute tick due during the run itself may run).
        assert [t for t in skipped if t < restarted_at - GRACE] == []
        # run_once: one job for all the missed ticks, the latest minute tick at or before
        # the first pass's cut-off; any other is a minute tick due during the run itself.
        assert 1 <= len(caught) <= 2
        earliest = (restarted_at - GRACE).replace(second=0, microsecond=0)
        assert earliest <= caught[0] <= cutoff
        assert all(t >= restarted_at - GRACE for t in caught[1:])
    finally:
        for server in servers:
            if server.alive():
                server.kill()

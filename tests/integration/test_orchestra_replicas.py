"""Timers are rows, not memory (DESIGN §9; issue 11 point 1): they fire after the
server that armed them is gone, and servers sharing one database fire each exactly
once. Real `Application`s on a fresh SQLite file and a fresh PostgreSQL database."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from server.app import Application
from server.domain.orchestra.definitions import ModelCache
from server.domain.orchestra.instances import OrchestraLimits, engine_call, start_process
from server.storage.repositories.orchestra import SqlOrchestraStore
from server.storage.tables import EventRow, OrchestraInstanceRow, table_of
from tests.conftest import BACKENDS, _create_pg_database, _drop_pg_database, settings_for
from tests.support.auth import ensure_tenant
from tests.support.clock import TestClock
from tests.support.orchestra import load_definition

_events = table_of(EventRow)
_instances = table_of(OrchestraInstanceRow)


@pytest.fixture(params=BACKENDS)
async def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'replicas.db'}"
        return
    name, url = await _create_pg_database()
    try:
        yield url
    finally:
        await _drop_pg_database(name)


async def _started(url: str) -> Application:
    app = Application(settings_for(url), clocks=TestClock().clocks())
    await app.start()
    return app


async def _start_timers(app: Application, count: int, duration: str) -> list[str]:
    tenant = await ensure_tenant(app, f"t-{uuid.uuid4().hex[:10]}")
    definition_id = f"timer_{uuid.uuid4().hex[:8]}"
    await load_definition(
        app,
        {
            "id": definition_id,
            "nodes": [
                {"id": "start", "type": "start"},
                {"id": "wait", "type": "timer", "duration": duration},
                {"id": "done", "type": "end"},
            ],
            "flows": [{"from": "start", "to": "wait"}, {"from": "wait", "to": "done"}],
        },
    )
    store = SqlOrchestraStore(app.store)
    models = ModelCache()
    return [
        await start_process(
            store,
            models,
            engine_call(tenant),
            definition_id,
            None,
            OrchestraLimits(),
            now=datetime.now(UTC),
        )
        for _ in range(count)
    ]


async def _wait_completed(app: Application, ids: list[str], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        async with app.db.read() as conn:
            done = (
                await conn.execute(
                    sa.select(sa.func.count()).where(
                        _instances.c.instance_id.in_(ids), _instances.c.status == "completed"
                    )
                )
            ).scalar()
        if done == len(ids):
            return
        assert time.monotonic() < deadline, f"{done} of {len(ids)} completed"
        await asyncio.sleep(0.1)


async def _fired(app: Application, ids: list[str]) -> dict[str, int]:
    subjects = [f"orchestra-instances/{i}" for i in ids]
    async with app.db.read() as conn:
        rows = (
            await conn.execute(
                sa.select(_events.c.subject, sa.func.count())
                .where(
                    _events.c.subject.in_(subjects),
                    _events.c.type == "orchestra.token.timer_fired",
                )
                .group_by(_events.c.subject)
            )
        ).all()
    return {subject.removeprefix("orchestra-instances/"): count for subject, count in rows}


async def test_timers_fire_after_the_server_that_armed_them_stopped(fresh_url: str) -> None:
    first = await _started(fresh_url)
    try:
        ids = await _start_timers(first, 5, "PT1S")
    finally:
        await first.stop(grace=1)
    second = await _started(fresh_url)
    try:
        await _wait_completed(second, ids)
        assert await _fired(second, ids) == dict.fromkeys(ids, 1)
    finally:
        await second.stop(grace=1)


async def test_replicas_fire_each_timer_once(fresh_url: str) -> None:
    replicas = [await _started(fresh_url) for _ in range(3)]
    try:
        ids = await _start_timers(replicas[0], 40, "PT0.5S")
        await _wait_completed(replicas[1], ids)
        assert await _fired(replicas[2], ids) == dict.fromkeys(ids, 1)
    finally:
        for replica in replicas:
            await replica.stop(grace=1)

"""Saga reads revalidate (critic finding 6 on issue 13) on SQLite and PostgreSQL
against the session's real server: GET /infrastructure/saga/{id} and /saga/stats
answer `private, no-cache` with an ETag (304 while unchanged, a new ETag once a
compensation ended), not the JobEngine reads' max-age=60; the DLQ stats keep the
JobEngine contract's header."""

from __future__ import annotations

import asyncio

import httpx

from server.app import Application
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

NO_CACHE = "private, no-cache"


async def test_saga_reads_revalidate_with_their_etag(
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
    instance_id, _ = await _run_to_ship_failure(orchestra, worker, definition_id, t)
    headers = await tokens.headers(tenant, ("orch:read", "orch:operate"))
    path = f"/infrastructure/saga/{instance_id}"

    compensating = await http.get(path, headers=headers)
    assert compensating.status_code == 200, compensating.text
    assert compensating.headers["cache-control"] == NO_CACHE
    etag = compensating.headers["etag"]
    assert compensating.json()["status"] == "compensating"
    same = await http.get(path, headers={**headers, "If-None-Match": etag})
    assert (same.status_code, same.content) == (304, b"")
    stats = await http.get("/infrastructure/saga/stats", headers=headers)
    assert stats.status_code == 200
    assert stats.headers["cache-control"] == NO_CACHE
    assert "etag" in stats.headers

    await worker.complete((await _one(worker, t.refund)).token, {})
    for _ in range(100):  # the engine moves the saga on after the job's commit
        moved = await http.get(path, headers={**headers, "If-None-Match": etag})
        if moved.status_code != 304:
            break
        await asyncio.sleep(0.05)
    assert moved.status_code == 200, moved.text  # revalidated: the saga moved on
    assert moved.headers["etag"] != etag
    assert [c["status"] for c in moved.json()["compensations"]] == ["succeeded", "running"]

    dlq = await http.get("/infrastructure/dlq/stats", headers=headers)
    assert dlq.status_code == 200, dlq.text
    assert dlq.headers["cache-control"] == "private, max-age=60, stale-if-error=300"

"""examples/ingest_worker.py as a user runs it (issue 13 point 1): a real subprocess
leasing from the session's real server over gRPC with a real client's credentials,
while a workflow run over REST goes from start to `completed` in GET
/workflows/history; SIGTERM drains it (exit 0). On a SQLite file and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import httpx
import sqlalchemy as sa

from server.app import Application
from server.interceptors.audit import REASON_HEADER
from server.storage.tables import OrchestraInstanceRow, table_of
from tests.support.auth import TokenFactory

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ingest_worker.py"
OPERATE = ("orch:read", "orch:operate")
_instances = table_of(OrchestraInstanceRow)


async def test_the_example_worker_runs_the_shipped_workflow_to_completion(
    app: Application,
    http: httpx.AsyncClient,
    tokens: TokenFactory,
    tenant: str,
    grpc_target: str,
    http_base: str,
) -> None:
    created = await tokens.client(tenant, OPERATE)
    env = {
        **os.environ,
        "ORCHESTRATOR_GRPC_TARGET": grpc_target,
        "ORCHESTRATOR_TOKEN_URL": f"{http_base}/oauth/token",
        "ORCHESTRATOR_CLIENT_ID": created.client.client_id,
        "ORCHESTRATOR_CLIENT_SECRET": created.client_secret,
    }
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        "--grace-period",
        "5",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        headers = {**await tokens.headers(tenant, OPERATE), REASON_HEADER: "example test"}
        started = await http.post(
            "/workflows/run", json={"variables": {"scope": "acme/app"}}, headers=headers
        )
        assert started.status_code == 202, started.text
        run_id = started.json()["runId"]
        status = ""
        for _ in range(300):  # up to 30 s: the worker starts, fetches a token, leases
            history = await http.get("/workflows/history", headers=headers)
            assert history.status_code == 200, history.text
            [item] = history.json()["items"]
            status = item["status"]
            if status != "running":
                break
            await asyncio.sleep(0.1)
        assert status == "completed", item
        assert item["runId"] == run_id and "endedAt" in item and "duration" in item
    finally:
        if worker.returncode is None:
            worker.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(worker.communicate(), timeout=30)
    assert worker.returncode == 0, output.decode()

    async with app.db.read() as conn:
        row = (
            await conn.execute(sa.select(_instances).where(_instances.c.instance_id == run_id))
        ).one()
    variables = json.loads(row.variables)
    ingested = {f"ingest_{s}" for s in ("github", "jira", "confluence", "swagger")}
    assert ingested <= set(variables)
    assert {variables[key]["scope"] for key in ingested} == {"acme/app"}
    total = sum(variables[key]["documents"] for key in ingested)
    analysis = variables["analysis"]
    assert analysis["sources"] == ["confluence", "github", "jira", "swagger"]
    assert analysis["documents"] == total
    assert analysis["consistent"] == (analysis["findings"] == 0)

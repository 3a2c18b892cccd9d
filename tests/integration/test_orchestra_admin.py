"""Process definitions over `/orchestra-admin/definitions` and `orchestrator definitions
load` (issue 11 point 1): put (201, 200 for the same content, 409 for other content or
an older version), get, list, validation errors naming the node, orch:admin, the
audit entry; the command line's exit codes and messages. SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from server.app import Application
from server.storage.tables import AuditEntryRow, OrchestraDefinitionRow, table_of
from tests.support.auth import TokenFactory

_audit = table_of(AuditEntryRow)
_definitions = table_of(OrchestraDefinitionRow)
REASON = {"X-Stella-Operator-Reason": "new approval flow"}


def _definition(definition_id: str, *, end: str = "done", **extra: Any) -> dict[str, Any]:
    return {
        "id": definition_id,
        "nodes": [
            {"id": "start", "type": "start"},
            {"id": "review", "type": "user_task"},
            {"id": end, "type": "end"},
        ],
        "flows": [{"from": "start", "to": "review"}, {"from": "review", "to": end}],
        **extra,
    }


@pytest.fixture
async def admin(tokens: TokenFactory, tenant: str) -> dict[str, str]:
    """An operator client's token (bound to no tenant): definitions are platform level."""
    token = await tokens.token(None, ("orch:admin",), tenants=(tenant,))
    return {"Authorization": f"Bearer {token}"}


def _fields(response: httpx.Response) -> list[str]:
    return [
        violation["field"]
        for detail in response.json()["details"]
        if detail["@type"].endswith("BadRequest")
        for violation in detail["fieldViolations"]
    ]


async def _stored(app: Application, definition_id: str) -> list[int]:
    """The versions of `definition_id` in the database, ascending."""
    async with app.db.read() as conn:
        rows = await conn.execute(
            sa.select(_definitions.c.version)
            .where(_definitions.c.definition_id == definition_id)
            .order_by(_definitions.c.version)
        )
        return list(rows.scalars())


async def test_put_get_list(
    http: httpx.AsyncClient, app: Application, admin: dict[str, str], tenant: str
) -> None:
    definition_id = f"flow_{uuid.uuid4().hex[:8]}"
    path = f"/orchestra-admin/definitions/{definition_id}"
    created = await http.put(path, json=_definition(definition_id), headers={**admin, **REASON})
    assert created.status_code == 201, created.text
    assert created.headers["cache-control"] == "no-store"
    body = created.json()
    assert body["id"] == definition_id
    assert body["version"] == 1
    assert "tenant" not in body or body["tenant"] is None
    assert body["nodes"] == _definition(definition_id)["nodes"]
    assert body["flows"] == _definition(definition_id)["flows"]
    assert body["created_by"]

    repeat = await http.put(path, json=_definition(definition_id), headers={**admin, **REASON})
    assert repeat.status_code == 200, repeat.text
    assert repeat.json()["version"] == 1

    second = await http.put(
        path, json=_definition(definition_id, end="finished"), headers={**admin, **REASON}
    )
    assert second.status_code == 201
    assert second.json()["version"] == 2
    conflict = await http.put(
        path,
        json=_definition(definition_id, end="other", version=2),
        headers={**admin, **REASON},
    )
    assert conflict.status_code == 409, conflict.text
    assert conflict.json()["code"] == "ALREADY_EXISTS"
    older = await http.put(
        path,
        json=_definition(definition_id, end="older", version=1),
        headers={**admin, **REASON},
    )
    assert older.status_code == 409
    assert older.json()["code"] == "ALREADY_EXISTS"
    scoped = await http.put(
        path, json=_definition(definition_id, tenant=tenant), headers={**admin, **REASON}
    )
    assert scoped.status_code == 409
    assert scoped.json()["code"] == "FAILED_PRECONDITION"

    latest = await http.get(path, headers=admin)
    assert latest.status_code == 200
    assert latest.json()["version"] == 2
    first = await http.get(path, params={"version": 1}, headers=admin)
    assert first.json()["nodes"][2]["id"] == "done"
    missing = await http.get(f"{path}x", headers=admin)
    assert missing.status_code == 404
    assert missing.headers["cache-control"] == "no-store"

    listing = await http.get(
        "/orchestra-admin/definitions",
        params={"definition_id": definition_id, "limit": 1},
        headers=admin,
    )
    assert listing.status_code == 200
    page = listing.json()
    assert [(item["id"], item["version"]) for item in page["items"]] == [(definition_id, 1)]
    rest = await http.get(
        "/orchestra-admin/definitions",
        params={
            "definition_id": definition_id,
            "limit": 1,
            "continuation_token": page["continuationToken"],
        },
        headers=admin,
    )
    assert [(item["id"], item["version"]) for item in rest.json()["items"]] == [(definition_id, 2)]
    assert "continuationToken" not in rest.json()
    for bad in (f"{definition_id}\x00", "9starts-with-a-digit"):  # a NUL was a 500
        refused = await http.get(
            "/orchestra-admin/definitions", params={"definition_id": bad}, headers=admin
        )
        assert refused.status_code == 400, refused.text
        assert refused.json()["details"][1]["fieldViolations"] == [
            {
                "field": "definitionId",
                "description": "must be 1-64 letters, digits, '_', '.' or '-', starting with a "
                f"letter, got {bad!r}",
            }
        ]

    async with app.db.read() as conn:
        entries = (
            await conn.execute(
                sa.select(_audit.c.action, _audit.c.resource, _audit.c.reason)
                .where(_audit.c.resource.like(f"orchestra-definitions/{definition_id}/%"))
                .order_by(_audit.c.created_at)
            )
        ).all()
    assert [tuple(entry) for entry in entries] == [
        (
            "orchestra-definitions.put_definition",
            f"orchestra-definitions/{definition_id}/versions/{version}",
            "new approval flow",
        )
        for version in (1, 2)
    ]


async def test_put_refusals(
    http: httpx.AsyncClient,
    app: Application,
    admin: dict[str, str],
    tokens: TokenFactory,
    tenant: str,
) -> None:
    definition_id = f"bad_{uuid.uuid4().hex[:8]}"
    path = f"/orchestra-admin/definitions/{definition_id}"
    broken = _definition(definition_id)
    broken["nodes"][1]["type"] = "usertask"
    broken["flows"].append({"from": "review", "to": "ghost"})
    refused = await http.put(path, json=broken, headers={**admin, **REASON})
    assert refused.status_code == 400, refused.text
    assert _fields(refused) == ["definition.nodes[1].type", "definition.flows[2].to"]
    assert "node 'review': unknown type 'usertask'" in refused.json()["error"]
    mismatch = await http.put(path, json=_definition("other"), headers={**admin, **REASON})
    assert mismatch.status_code == 400
    assert _fields(mismatch) == ["definition.id"]
    no_reason = await http.put(path, json=_definition(definition_id), headers=admin)
    assert no_reason.status_code == 400
    reader = await tokens.token(tenant)
    forbidden = await http.put(
        path,
        json=_definition(definition_id),
        headers={"Authorization": f"Bearer {reader}", **REASON},
    )
    assert forbidden.status_code == 403
    assert await _stored(app, definition_id) == []


async def test_a_definition_at_the_last_version_refuses_a_next_one(
    http: httpx.AsyncClient, app: Application, admin: dict[str, str]
) -> None:
    """`version` is int32: a put of "the next version" after 2^31 - 1 is refused naming
    the definition, nothing is stored, and the definition still reads and lists."""
    definition_id = f"last_{uuid.uuid4().hex[:8]}"
    path = f"/orchestra-admin/definitions/{definition_id}"
    last = await http.put(
        path, json=_definition(definition_id, version=2**31 - 1), headers={**admin, **REASON}
    )
    assert last.status_code == 201, last.text
    refused = await http.put(
        path, json=_definition(definition_id, end="finished"), headers={**admin, **REASON}
    )
    assert refused.status_code == 409, refused.text  # as VERSION_NOT_NEWER
    body = refused.json()
    assert body["code"] == "FAILED_PRECONDITION"
    assert body["error"] == (
        f"process definition {definition_id!r} is at version 2147483647, the last there can"
        " be; store the process under a new definition id"
    )
    assert "VERSION_EXHAUSTED" in refused.text
    assert await _stored(app, definition_id) == [2**31 - 1]
    read = await http.get(path, headers=admin)
    assert (read.status_code, read.json()["version"]) == (200, 2**31 - 1)
    listed = await http.get("/orchestra-admin/definitions", headers=admin)
    assert listed.status_code == 200, listed.text


async def test_a_tenant_scope_must_name_a_tenant(
    http: httpx.AsyncClient, app: Application, admin: dict[str, str], tenant: str
) -> None:
    """A definition scoped to a tenant that does not exist (a typo) would be started
    by nobody: it is 400 naming definition.tenant, and nothing is stored."""
    definition_id = f"scoped_{uuid.uuid4().hex[:8]}"
    path = f"/orchestra-admin/definitions/{definition_id}"
    ghost = f"no-such-{uuid.uuid4().hex[:6]}"
    refused = await http.put(
        path, json=_definition(definition_id, tenant=ghost), headers={**admin, **REASON}
    )
    assert refused.status_code == 400, refused.text
    assert _fields(refused) == ["definition.tenant"]
    assert refused.json()["error"] == (
        f"definition.tenant: no tenant {ghost!r} exists; create the tenant first, or leave"
        " tenant out to share the definition with every tenant"
    )
    assert "TENANT_NOT_FOUND" in refused.text
    assert await _stored(app, definition_id) == []
    scoped = await http.put(
        path, json=_definition(definition_id, tenant=tenant), headers={**admin, **REASON}
    )
    assert scoped.status_code == 201, scoped.text


def _cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ORCHESTRATOR_DATABASE_URL": database_url,
        "ORCHESTRATOR_CONFIG_FILE": os.devnull,
    }
    return subprocess.run(
        [sys.executable, "-m", "server.cli", "definitions", "load", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


async def test_cli_load(database_url: str, app: Application, tmp_path: Path) -> None:
    definition_id = f"cli_{uuid.uuid4().hex[:8]}"
    good = tmp_path / "good.yaml"
    good.write_text(
        f"""
id: {definition_id}
version: 1
tenant: null
nodes:
  - {{id: start, type: start}}
  - {{id: review, type: user_task}}
  - {{id: route, type: exclusive_gateway, default: reject}}
  - {{id: reject, type: end}}
  - {{id: done, type: end}}
flows:
  - {{from: start, to: review}}
  - {{from: review, to: route}}
  - {{from: route, to: done, condition: "amount < 1000"}}
  - {{from: route, to: reject}}
""",
        encoding="utf-8",
    )
    loaded = _cli(database_url, str(good))
    assert loaded.returncode == 0, loaded.stderr
    assert json.loads(loaded.stdout) == {
        "definition_id": definition_id,
        "version": 1,
        "created": True,
    }
    again = _cli(database_url, str(good))
    assert again.returncode == 0
    assert json.loads(again.stdout)["created"] is False

    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "id": f"{definition_id}_bad",
                "nodes": [
                    {"id": "start", "type": "start"},
                    {"id": "route", "type": "exclusive_gateway", "default": "done"},
                    {"id": "done", "type": "end"},
                ],
                "flows": [
                    {"from": "start", "to": "route"},
                    {"from": "route", "to": "done"},
                    {"from": "route", "to": "start", "condition": "explode(x)"},
                ],
            }
        ),
        encoding="utf-8",
    )
    refused = _cli(database_url, str(bad))
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert "node 'start': the start node cannot have incoming flows" in refused.stderr
    assert "calls undefined functions: explode()" in refused.stderr
    assert "Traceback" not in refused.stderr

    unreadable = _cli(database_url, str(tmp_path / "absent.yaml"))
    assert unreadable.returncode == 2
    assert unreadable.stderr.startswith("orchestrator definitions load: cannot read ")
    not_yaml = tmp_path / "broken.yaml"
    not_yaml.write_text("nodes: [1, 2\n", encoding="utf-8")
    broken = _cli(database_url, str(not_yaml))
    assert broken.returncode == 2
    assert "is not YAML or JSON (line " in broken.stderr

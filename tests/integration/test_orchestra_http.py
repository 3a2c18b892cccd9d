"""The Orchestra cross-site API over REST exactly as seed 004 says (issue 11 point 3):
paths, status codes, bodies, `Cache-Control: no-store` on every response, the tenant
from the consumer's binding and the permission `access orchestra api`; on SQLite and
PostgreSQL through the in-process gateway of a real server."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from server.app import Application
from server.identity.scopes import ORCHESTRA_PERMISSION
from server.storage.tables import (
    EventRow,
    OrchestraInstanceRow,
    OrchestraTokenRow,
    table_of,
)
from tests.support.auth import TokenFactory, ensure_tenant
from tests.support.orchestra import load_definition

_instances = table_of(OrchestraInstanceRow)
_tokens = table_of(OrchestraTokenRow)
_events = table_of(EventRow)
NO_STORE = "no-store"


def _approval(definition_id: str) -> dict[str, Any]:
    return {
        "id": definition_id,
        "nodes": [
            {"id": "start", "type": "start"},
            {"id": "review", "type": "user_task"},
            {"id": "route", "type": "exclusive_gateway", "default": "reject"},
            {"id": "done", "type": "end"},
            {"id": "reject", "type": "end"},
        ],
        "flows": [
            {"from": "start", "to": "review"},
            {"from": "review", "to": "route"},
            {"from": "route", "to": "done", "condition": "amount < 1000"},
            {"from": "route", "to": "reject"},
        ],
    }


@pytest.fixture
async def consumer(tokens: TokenFactory, tenant: str) -> dict[str, str]:
    """Headers of a consumer client bound to `tenant` with the Orchestra permission."""
    token = await tokens.token(tenant, permissions=[ORCHESTRA_PERMISSION])
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def approval(app: Application) -> str:
    definition_id = f"approve_{uuid.uuid4().hex[:8]}"
    await load_definition(app, _approval(definition_id))
    return definition_id


def _no_store(response: httpx.Response) -> None:
    assert response.headers.get("cache-control") == NO_STORE, (
        response.status_code,
        response.headers,
    )


async def _start(
    http: httpx.AsyncClient, headers: dict[str, str], definition_id: str, **body: Any
) -> str:
    response = await http.post(
        f"/orchestra-api/process/{definition_id}/start", json=body, headers=headers
    )
    assert response.status_code == 201, response.text
    _no_store(response)
    assert set(response.json()) == {"instance_id"}
    return str(response.json()["instance_id"])


async def test_start_get_signal_complete(
    http: httpx.AsyncClient, consumer: dict[str, str], approval: str, tenant: str
) -> None:
    instance_id = await _start(http, consumer, approval, variables={"amount": 500})
    response = await http.get(f"/orchestra-api/instance/{instance_id}", headers=consumer)
    assert response.status_code == 200, response.text
    _no_store(response)
    state = response.json()
    assert state["id"] == instance_id
    assert state["definition_id"] == approval
    assert state["status"] == "running"
    assert state["tenant_id"] == tenant
    [token] = state["tokens"]
    assert token["node_id"] == "review"
    assert token["status"] == "parked"

    response = await http.post(f"/orchestra-api/token/{token['id']}/signal", headers=consumer)
    assert response.status_code == 200, response.text
    _no_store(response)
    assert response.json() == {"status": "signalled"}

    state = (await http.get(f"/orchestra-api/instance/{instance_id}", headers=consumer)).json()
    assert state["status"] == "completed"
    assert state["tokens"] == []

    again = await http.post(f"/orchestra-api/token/{token['id']}/signal", headers=consumer)
    assert again.status_code == 422, again.text
    _no_store(again)
    assert "error" in again.json()


async def test_unknown_or_foreign_definition_is_422(
    http: httpx.AsyncClient, app: Application, consumer: dict[str, str]
) -> None:
    scoped = f"scoped_{uuid.uuid4().hex[:8]}"
    document = _approval(scoped)
    document["tenant"] = await ensure_tenant(app, "someone-else")
    await load_definition(app, document)
    for definition_id in (scoped, f"absent_{uuid.uuid4().hex[:8]}", "bad id!%2F"):
        response = await http.post(
            f"/orchestra-api/process/{definition_id}/start", json={}, headers=consumer
        )
        assert response.status_code == 422, response.text
        _no_store(response)
        body = response.json()
        assert body["code"] == "NOT_FOUND"
        assert body["error"].startswith("process definition ")


async def test_start_without_a_body_and_with_a_malformed_one(
    http: httpx.AsyncClient, consumer: dict[str, str], approval: str
) -> None:
    response = await http.post(f"/orchestra-api/process/{approval}/start", headers=consumer)
    assert response.status_code == 201, response.text
    # The seed's schemas allow additional properties, and list no other parameters.
    extra = await http.post(
        f"/orchestra-api/process/{approval}/start",
        params={"unknown": "1"},
        json={"variables": {"a": 1}, "x": 1},
        headers=consumer,
    )
    assert extra.status_code == 201, extra.text
    for content in (
        b"{",
        b"[1]",
        b'{"variables": 5}',
        b'{"variables": null}',
        b'{"variables": []}',
    ):
        response = await http.post(
            f"/orchestra-api/process/{approval}/start",
            content=content,
            headers={**consumer, "Content-Type": "application/json"},
        )
        assert response.status_code == 400, (content, response.text)
        _no_store(response)
        assert isinstance(response.json()["error"], str)


async def test_bad_variable_names_and_oversized_variables_leave_nothing(
    http: httpx.AsyncClient, app: Application, consumer: dict[str, str], approval: str, tenant: str
) -> None:
    for variables, field in (
        ({"a/b": 1}, "variables.a/b"),
        ({"a.b": 1}, "variables.a.b"),
        ({"9lives": 1}, "variables.9lives"),
        ({"big": "x" * (300 * 1024)}, "variables"),
        ({"v" * 5000: 1}, f"variables.{'v' * 200}…"),  # a long name is cut, not repeated
    ):
        response = await http.post(
            f"/orchestra-api/process/{approval}/start",
            json={"variables": variables},
            headers=consumer,
        )
        assert response.status_code == 400, response.text
        _no_store(response)
        body = response.json()
        fields = [
            violation["field"]
            for detail in body["details"]
            if detail["@type"].endswith("BadRequest")
            for violation in detail["fieldViolations"]
        ]
        assert fields == [field], body
        assert len(response.content) < 2_000
    async with app.db.read() as conn:
        count = (
            await conn.execute(sa.select(sa.func.count()).where(_instances.c.tenant_id == tenant))
        ).scalar()
    assert count == 0


async def test_list_is_a_bare_array_newest_first_with_filters(
    http: httpx.AsyncClient,
    app: Application,
    consumer: dict[str, str],
    approval: str,
) -> None:
    other = f"other_{uuid.uuid4().hex[:8]}"
    await load_definition(app, _approval(other))
    first = await _start(http, consumer, approval)
    second = await _start(http, consumer, other)
    third = await _start(http, consumer, approval, variables={"amount": 1})
    state = (await http.get(f"/orchestra-api/instance/{third}", headers=consumer)).json()
    signal = await http.post(
        f"/orchestra-api/token/{state['tokens'][0]['id']}/signal", headers=consumer
    )
    assert signal.status_code == 200

    response = await http.get("/orchestra-api/instances", headers=consumer)
    assert response.status_code == 200
    _no_store(response)
    assert response.json() == [
        {"id": third, "definition_id": approval, "status": "completed"},
        {"id": second, "definition_id": other, "status": "running"},
        {"id": first, "definition_id": approval, "status": "running"},
    ]
    filtered = await http.get(
        "/orchestra-api/instances", params={"definition_id": approval}, headers=consumer
    )
    assert [item["id"] for item in filtered.json()] == [third, first]
    running = await http.get(
        "/orchestra-api/instances",
        params={"definition_id": approval, "status": "running"},
        headers=consumer,
    )
    assert running.json() == [{"id": first, "definition_id": approval, "status": "running"}]
    for params in ({"status": "bogus"}, {"definition_id": "nope"}):
        empty = await http.get("/orchestra-api/instances", params=params, headers=consumer)
        assert empty.status_code == 200
        assert empty.json() == []


async def test_another_tenant_sees_nothing(
    http: httpx.AsyncClient, tokens: TokenFactory, consumer: dict[str, str], approval: str
) -> None:
    instance_id = await _start(http, consumer, approval, variables={"amount": 5})
    state = (await http.get(f"/orchestra-api/instance/{instance_id}", headers=consumer)).json()
    token_id = state["tokens"][0]["id"]
    stranger_tenant = f"t-{uuid.uuid4().hex[:10]}"
    stranger_token = await tokens.token(stranger_tenant, permissions=[ORCHESTRA_PERMISSION])
    # The tenant is the binding's: a header naming the owner changes nothing.
    stranger = {"Authorization": f"Bearer {stranger_token}", "X-Stella-Tenant": "whatever"}

    absent = str(uuid.uuid4())
    foreign = await http.get(f"/orchestra-api/instance/{instance_id}", headers=stranger)
    missing = await http.get(f"/orchestra-api/instance/{absent}", headers=stranger)
    assert foreign.status_code == missing.status_code == 404
    _no_store(foreign)
    assert foreign.json() == _swap(missing.json(), absent, instance_id)

    assert (await http.get("/orchestra-api/instances", headers=stranger)).json() == []
    variables = await http.get(f"/orchestra-api/instance/{instance_id}/variables", headers=stranger)
    assert variables.status_code == 200
    assert variables.json() == {}
    signal = await http.post(f"/orchestra-api/token/{token_id}/signal", headers=stranger)
    assert signal.status_code == 422
    _no_store(signal)
    put = await http.put(
        f"/orchestra-api/instance/{instance_id}/variable/amount",
        json={"value": 1},
        headers=stranger,
    )
    assert put.status_code == 422
    # Untouched for its owner.
    own = await http.get(f"/orchestra-api/instance/{instance_id}/variables", headers=consumer)
    assert own.json() == {"amount": 5}
    assert (await http.get(f"/orchestra-api/instance/{instance_id}", headers=consumer)).json()[
        "tokens"
    ] == state["tokens"]


def _swap(document: Any, old: str, new: str) -> Any:
    if isinstance(document, str):
        return document.replace(old, new)
    if isinstance(document, list):
        return [_swap(item, old, new) for item in document]
    if isinstance(document, dict):
        return {key: _swap(value, old, new) for key, value in document.items()}
    return document


async def test_variables_read_and_set_any_json(
    http: httpx.AsyncClient, consumer: dict[str, str], approval: str
) -> None:
    instance_id = await _start(http, consumer, approval, variables={"amount": 7, "who": "ann"})
    base = f"/orchestra-api/instance/{instance_id}"
    response = await http.get(f"{base}/variables", headers=consumer)
    assert response.status_code == 200
    _no_store(response)
    assert response.json() == {"amount": 7, "who": "ann"}
    values: list[Any] = [None, True, 2.5, -3, "text", [1, "two", None], {"nested": {"x": [1]}}]
    for i, value in enumerate(values):
        put = await http.put(f"{base}/variable/v{i}", json={"value": value}, headers=consumer)
        assert put.status_code == 200, put.text
        _no_store(put)
        assert put.json() == {"status": "set"}
    response = await http.get(f"{base}/variables", headers=consumer)
    assert response.json() == {
        "amount": 7,
        "who": "ann",
        **{f"v{i}": value for i, value in enumerate(values)},
    }
    replaced = await http.put(f"{base}/variable/amount", json={"value": 9}, headers=consumer)
    assert replaced.status_code == 200
    assert (await http.get(f"{base}/variables", headers=consumer)).json()["amount"] == 9


async def test_set_variable_bad_input(
    http: httpx.AsyncClient, consumer: dict[str, str], approval: str
) -> None:
    instance_id = await _start(http, consumer, approval)
    base = f"/orchestra-api/instance/{instance_id}"
    cases: list[tuple[str, Any, str]] = [
        ("amount", {}, "value"),
        ("amount", {"valu": 1}, ""),
        ("a.b", {"value": 1}, "name"),
        ("a%2Fb", {"value": 1}, "name"),
        ("a%5B0%5D", {"value": 1}, "name"),
        ("big", {"value": "x" * (300 * 1024)}, "value"),
    ]
    for name, body, field in cases:
        response = await http.put(f"{base}/variable/{name}", json=body, headers=consumer)
        assert response.status_code == 400, (name, body, response.text)
        _no_store(response)
        document = response.json()
        assert isinstance(document["error"], str)
        if field:
            assert document["error"].startswith(f"{field}: "), document
    malformed = await http.put(
        f"{base}/variable/x",
        content=b"{nope",
        headers={**consumer, "Content-Type": "application/json"},
    )
    assert malformed.status_code == 400
    _no_store(malformed)
    assert (await http.get(f"{base}/variables", headers=consumer)).json() == {}
    absent = await http.put(
        f"/orchestra-api/instance/{uuid.uuid4()}/variable/x", json={"value": 1}, headers=consumer
    )
    assert absent.status_code == 422
    _no_store(absent)


async def test_finished_instance_refuses_changes(
    http: httpx.AsyncClient, consumer: dict[str, str], approval: str
) -> None:
    instance_id = await _start(http, consumer, approval, variables={"amount": 5000})
    state = (await http.get(f"/orchestra-api/instance/{instance_id}", headers=consumer)).json()
    signal = await http.post(
        f"/orchestra-api/token/{state['tokens'][0]['id']}/signal", headers=consumer
    )
    assert signal.status_code == 200
    put = await http.put(
        f"/orchestra-api/instance/{instance_id}/variable/late", json={"value": 1}, headers=consumer
    )
    assert put.status_code == 422
    assert put.json()["code"] == "FAILED_PRECONDITION"
    assert (
        await http.get(f"/orchestra-api/instance/{instance_id}/variables", headers=consumer)
    ).json() == {"amount": 5000}


async def test_gateway_errors_on_these_paths_are_no_store(
    http: httpx.AsyncClient, consumer: dict[str, str], approval: str
) -> None:
    cases = [
        ("GET", "/orchestra-api/nowhere", consumer, 404),
        ("GET", "/orchestra-api", consumer, 404),
        ("DELETE", "/orchestra-api/instances", consumer, 405),
        ("PATCH", f"/orchestra-api/process/{approval}/start", consumer, 405),
        ("GET", "/orchestra-api/instances", {}, 401),
        ("POST", f"/orchestra-api/process/{approval}/start", {}, 401),
        ("GET", f"/orchestra-api/instance/{uuid.uuid4()}", consumer, 404),
        ("POST", "/orchestra-api/token/x/signal", {"Authorization": "Bearer nonsense"}, 401),
    ]
    for method, path, headers, status in cases:
        response = await http.request(method, path, headers=headers)
        assert response.status_code == status, (method, path, response.text)
        _no_store(response)
        assert isinstance(response.json()["error"], str)


async def test_access_needs_the_permission_and_a_bound_client(
    http: httpx.AsyncClient, tokens: TokenFactory, tenant: str, approval: str
) -> None:
    plain = await tokens.token(tenant)  # orch:read orch:operate, no permission
    response = await http.get(
        "/orchestra-api/instances", headers={"Authorization": f"Bearer {plain}"}
    )
    assert response.status_code == 403, response.text
    _no_store(response)
    assert "access orchestra api" in response.json()["error"]
    operator = await tokens.token(None, tenants=[tenant], permissions=[ORCHESTRA_PERMISSION])
    response = await http.post(
        f"/orchestra-api/process/{approval}/start",
        json={},
        headers={"Authorization": f"Bearer {operator}", "X-Stella-Tenant": tenant},
    )
    assert response.status_code == 403, response.text
    _no_store(response)


async def test_exclusive_gateway_routes_and_events_record_every_transition(
    http: httpx.AsyncClient, app: Application, consumer: dict[str, str], approval: str
) -> None:
    instance_id = await _start(http, consumer, approval, variables={"amount": 5000})
    state = (await http.get(f"/orchestra-api/instance/{instance_id}", headers=consumer)).json()
    token_id = state["tokens"][0]["id"]
    await http.post(f"/orchestra-api/token/{token_id}/signal", headers=consumer)
    async with app.db.read() as conn:
        rows = (
            await conn.execute(
                sa.select(_events.c.type, _events.c.data)
                .where(_events.c.subject == f"orchestra-instances/{instance_id}")
                .order_by(_events.c.event_id)
            )
        ).all()
    kinds = [row.type for row in rows]
    assert kinds == [
        "orchestra.instance.started",
        "orchestra.variables.set",
        "orchestra.token.entered",
        "orchestra.token.entered",
        "orchestra.token.parked",
        "orchestra.token.signalled",
        "orchestra.token.entered",
        "orchestra.token.entered",
        "orchestra.instance.completed",
    ]
    entered = [row.data for row in rows if row.type == "orchestra.token.entered"]
    assert ['"node_id":"reject"' in data for data in entered] == [False, False, False, True]


async def test_condition_runtime_error_fails_the_instance_not_the_server(
    http: httpx.AsyncClient, consumer: dict[str, str], approval: str
) -> None:
    instance_id = await _start(http, consumer, approval, variables={"amount": "lots"})
    state = (await http.get(f"/orchestra-api/instance/{instance_id}", headers=consumer)).json()
    response = await http.post(
        f"/orchestra-api/token/{state['tokens'][0]['id']}/signal", headers=consumer
    )
    assert response.status_code == 200
    state = (await http.get(f"/orchestra-api/instance/{instance_id}", headers=consumer)).json()
    assert state["status"] == "failed"
    assert state["tokens"] == []
    incident = state["incident"]
    assert incident["kind"] == "condition_error"
    assert incident["node_id"] == "route"
    assert incident["message"].startswith("condition 'amount < 1000' failed: ")
    missing = await _start(http, consumer, approval)  # no `amount` at all
    state = (await http.get(f"/orchestra-api/instance/{missing}", headers=consumer)).json()
    await http.post(f"/orchestra-api/token/{state['tokens'][0]['id']}/signal", headers=consumer)
    state = (await http.get(f"/orchestra-api/instance/{missing}", headers=consumer)).json()
    assert state["status"] == "failed"
    assert state["incident"]["message"] == (
        "condition 'amount < 1000' failed: undeclared reference to 'amount'"
    )


async def test_a_client_with_the_permission_and_no_scope_is_served(
    http: httpx.AsyncClient, tokens: TokenFactory, tenant: str, approval: str
) -> None:
    token = await tokens.token(tenant, (), permissions=[ORCHESTRA_PERMISSION])
    headers = {"Authorization": f"Bearer {token}"}
    instance_id = await _start(http, headers, approval)
    response = await http.get("/orchestra-api/instances", headers=headers)
    assert [item["id"] for item in response.json()] == [instance_id]


async def test_signal_merges_variables_and_refuses_bad_ones(
    http: httpx.AsyncClient, app: Application, consumer: dict[str, str], tenant: str
) -> None:
    definition_id = f"mine_{uuid.uuid4().hex[:8]}"
    await load_definition(app, {**_approval(definition_id), "tenant": tenant})  # scoped to us
    instance_id = await _start(http, consumer, definition_id, variables={"amount": 5000})
    state = (await http.get(f"/orchestra-api/instance/{instance_id}", headers=consumer)).json()
    path = f"/orchestra-api/token/{state['tokens'][0]['id']}/signal"
    for body, field in (
        ({"variables": {"bad name": 1}}, "variables.bad name"),
        ({"variables": {"note": "x" * (300 * 1024)}}, "variables"),
    ):
        refused = await http.post(path, json=body, headers=consumer)
        assert refused.status_code == 400, refused.text
        _no_store(refused)
        assert refused.json()["error"].startswith(f"{field}: ")
    # Refused signals changed nothing: the token is still parked, then routes on `amount`.
    signalled = await http.post(path, json={"variables": {"amount": 10}}, headers=consumer)
    assert signalled.status_code == 200, signalled.text
    assert signalled.json() == {"status": "signalled"}
    variables = await http.get(f"/orchestra-api/instance/{instance_id}/variables", headers=consumer)
    assert variables.json() == {"amount": 10}
    async with app.db.read() as conn:
        entered = (
            await conn.execute(
                sa.select(_events.c.data).where(
                    _events.c.subject == f"orchestra-instances/{instance_id}",
                    _events.c.type == "orchestra.token.entered",
                )
            )
        ).scalars()
        assert any('"node_id":"done"' in data for data in entered)


async def test_variables_beyond_2_53_are_refused_not_rounded(
    http: httpx.AsyncClient, app: Application, consumer: dict[str, str], approval: str, tenant: str
) -> None:
    """Issue 11's known defect "values > 2^53 in variables lose precision": a variable is
    a google.protobuf.Value, whose numbers are doubles, so 9007199254740993 was stored as
    9007199254740992. Such integers are now 400 with the seed's {"error": ...} body,
    naming the value, and nothing is written; 2^53 itself and the digits as a string
    are kept exactly."""
    big = 2**53 + 1
    hint = "is an integer beyond 2^53, which a JSON value field carries as a double"
    started = await http.post(
        f"/orchestra-api/process/{approval}/start",
        json={"variables": {"amount": big}},
        headers=consumer,
    )
    assert started.status_code == 400, started.text
    _no_store(started)
    assert started.json()["error"] == (
        f'invalid body field "variables.amount": {big} {hint}; send it as a string'
    )
    async with app.db.read() as conn:
        count = (
            await conn.execute(sa.select(sa.func.count()).where(_instances.c.tenant_id == tenant))
        ).scalar()
    assert count == 0
    instance_id = await _start(http, consumer, approval, variables={"amount": 2**53})
    base = f"/orchestra-api/instance/{instance_id}"
    put = await http.put(f"{base}/variable/n", json={"value": [1, -big]}, headers=consumer)
    assert put.status_code == 400, put.text
    _no_store(put)
    assert put.json()["error"] == (
        f'invalid body field "value[1]": {-big} {hint}; send it as a string'
    )
    kept = await http.put(f"{base}/variable/s", json={"value": str(big)}, headers=consumer)
    assert kept.status_code == 200, kept.text
    variables = await http.get(f"{base}/variables", headers=consumer)
    assert variables.json() == {"amount": 2**53, "s": str(big)}

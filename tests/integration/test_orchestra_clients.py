"""One contract suite for `clients.orchestra.OrchestraClient` (issue 11 point 5), run
unchanged against its three implementations (in-process, gRPC, REST) on a real server,
SQLite and PostgreSQL: the same calls give the same values, and failures surface as
the same exception types with the same codes, messages and seed HTTP statuses."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from clients.auth import REFRESH_MARGIN_SECONDS, ClientCredentials
from clients.orchestra import (
    GrpcOrchestraClient,
    InstanceState,
    InstanceSummary,
    InvalidArgument,
    LocalOrchestraClient,
    NotFound,
    OrchestraClient,
    PermissionDenied,
    RemoteOrchestraClient,
    TokenState,
    Unauthenticated,
    Unprocessable,
)
from server.app import Application
from server.identity.authorization_server.clients import CreatedClient
from server.identity.scopes import ORCHESTRA_PERMISSION
from tests.support.auth import TokenFactory, ensure_tenant
from tests.support.clock import TestClock
from tests.support.orchestra import load_definition

KINDS = ("local", "grpc", "remote")
Factory = Callable[[CreatedClient, Callable[[], float] | None], OrchestraClient]


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


class FakeClock:
    """A monotonic clock the test moves (the credentials' idea of now)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=KINDS)
async def make_client(
    request: pytest.FixtureRequest, app: Application, grpc_target: str, http_base: str
) -> AsyncIterator[Factory]:
    """Builds an OrchestraClient of this run's kind for a registered OAuth client
    (client credentials, sent in the token form as the seed has them)."""
    made: list[OrchestraClient] = []

    def build(created: CreatedClient, clock: Callable[[], float] | None = None) -> OrchestraClient:
        credentials = ClientCredentials(
            http_base + "/oauth/token",
            created.client.client_id,
            created.client_secret,
            client_authentication="client_secret_post",
        )
        if clock is not None:
            credentials.clock = clock
        client: OrchestraClient
        if request.param == "local":
            client = LocalOrchestraClient(app.gateway.upstream, credentials=credentials)
        elif request.param == "grpc":
            client = GrpcOrchestraClient(grpc_target, credentials=credentials)
        else:
            client = RemoteOrchestraClient(http_base, credentials=credentials)
        made.append(client)
        return client

    try:
        yield build
    finally:
        for client in made:
            await client.close()


@pytest.fixture
async def consumer(tokens: TokenFactory, tenant: str) -> CreatedClient:
    """A client bound to `tenant` whose role holds `access orchestra api`."""
    return await tokens.client(tenant, permissions=[ORCHESTRA_PERMISSION])


@pytest.fixture
def orchestra(make_client: Factory, consumer: CreatedClient) -> OrchestraClient:
    return make_client(consumer, None)


@pytest.fixture
async def approval(app: Application) -> str:
    definition_id = f"approve_{uuid.uuid4().hex[:8]}"
    await load_definition(app, _approval(definition_id))
    return definition_id


async def _parked(orchestra: OrchestraClient, instance_id: str) -> str:
    [token] = (await orchestra.get_instance(instance_id)).tokens
    assert token.status == "parked"
    return token.id


async def test_each_implementation_is_an_orchestra_client(orchestra: OrchestraClient) -> None:
    assert isinstance(orchestra, OrchestraClient)


async def test_start_read_signal_until_completed(
    orchestra: OrchestraClient, approval: str, tenant: str, clock: TestClock
) -> None:
    # the server's clock (earlier tests move it forward), not the wall's
    before = datetime.fromtimestamp(clock.wall(), UTC) - timedelta(seconds=1)
    variables = {"amount": 500, "who": "ann", "tags": ["a", 1, None], "deep": {"x": [True]}}
    instance_id = await orchestra.start_process(approval, variables)
    uuid.UUID(instance_id)

    state = await orchestra.get_instance(instance_id)
    [token] = state.tokens
    assert state == InstanceState(
        id=instance_id,
        definition_id=approval,
        status="running",
        tenant_id=tenant,
        tokens=(TokenState(id=token.id, node_id="review", status="parked"),),
        definition_version=1,
        created_at=state.created_at,
        updated_at=state.updated_at,
        incident=None,
    )
    assert state.created_at is not None and state.updated_at is not None
    assert before <= state.created_at <= state.updated_at
    assert state.updated_at <= datetime.fromtimestamp(clock.wall(), UTC)
    assert await orchestra.get_variables(instance_id) == variables
    assert await orchestra.list_instances() == [
        InstanceSummary(id=instance_id, definition_id=approval, status="running")
    ]

    await orchestra.signal_token(token.id, {"amount": 999.5, "note": "ok"})
    done = await orchestra.get_instance(instance_id)
    assert (done.status, done.tokens, done.incident) == ("completed", (), None)
    assert await orchestra.get_variables(instance_id) == {
        **variables,
        "amount": 999.5,
        "note": "ok",
    }
    assert await orchestra.list_instances(status="completed") == [
        InstanceSummary(id=instance_id, definition_id=approval, status="completed")
    ]


async def test_variables_hold_any_json_value(orchestra: OrchestraClient, approval: str) -> None:
    instance_id = await orchestra.start_process(approval)
    assert await orchestra.get_variables(instance_id) == {}
    values: list[Any] = [None, True, 2.5, -3, 2**53, "text", [1, "two", None], {"n": {"x": [1]}}]
    for index, value in enumerate(values):
        await orchestra.set_variable(instance_id, f"v{index}", value)
    await orchestra.set_variable(instance_id, "v1", False)  # replaced
    expected = {f"v{index}": value for index, value in enumerate(values)} | {"v1": False}
    assert await orchestra.get_variables(instance_id) == expected
    assert isinstance((await orchestra.get_variables(instance_id))["v3"], int)


async def test_list_is_newest_first_with_exact_filters(
    app: Application, orchestra: OrchestraClient, approval: str
) -> None:
    other = f"other_{uuid.uuid4().hex[:8]}"
    await load_definition(app, _approval(other))
    first = await orchestra.start_process(approval)
    second = await orchestra.start_process(other)
    third = await orchestra.start_process(approval, {"amount": 5000})
    await orchestra.signal_token(await _parked(orchestra, third))

    assert await orchestra.list_instances() == [
        InstanceSummary(third, approval, "completed"),
        InstanceSummary(second, other, "running"),
        InstanceSummary(first, approval, "running"),
    ]
    assert [i.id for i in await orchestra.list_instances(definition_id=approval)] == [third, first]
    assert await orchestra.list_instances(definition_id=approval, status="running") == [
        InstanceSummary(first, approval, "running")
    ]
    assert await orchestra.list_instances(status="bogus") == []
    assert await orchestra.list_instances(definition_id="nope") == []
    # A value with a NUL no instance has either (PostgreSQL refused it in text: 500)
    assert await orchestra.list_instances(definition_id=f"{approval}\x00") == []
    assert await orchestra.list_instances(status="running\x00") == []


async def test_absent_and_foreign_instances_are_not_found_alike(
    make_client: Factory, orchestra: OrchestraClient, tokens: TokenFactory, approval: str
) -> None:
    instance_id = await orchestra.start_process(approval, {"amount": 5})
    token_id = await _parked(orchestra, instance_id)
    stranger = make_client(
        await tokens.client(f"t-{uuid.uuid4().hex[:10]}", permissions=[ORCHESTRA_PERMISSION]),
        None,
    )
    absent = str(uuid.uuid4())

    with pytest.raises(NotFound) as foreign:
        await stranger.get_instance(instance_id)
    with pytest.raises(NotFound) as missing:
        await stranger.get_instance(absent)
    assert (foreign.value.code, foreign.value.http_status) == ("NOT_FOUND", 404)
    assert foreign.value.message == missing.value.message.replace(absent, instance_id)
    assert await stranger.get_variables(instance_id) == {}
    assert await stranger.get_variables(absent) == {}
    assert await stranger.list_instances() == []
    with pytest.raises(Unprocessable) as signal:
        await stranger.signal_token(token_id)
    assert (signal.value.code, signal.value.http_status) == ("NOT_FOUND", 422)
    with pytest.raises(Unprocessable) as write:
        await stranger.set_variable(instance_id, "amount", 1)
    assert (write.value.code, write.value.http_status) == ("NOT_FOUND", 422)
    # Untouched for the owner.
    assert await orchestra.get_variables(instance_id) == {"amount": 5}
    assert await _parked(orchestra, instance_id) == token_id


async def test_unknown_definition_and_tokens_that_are_not_parked_are_unprocessable(
    app: Application, orchestra: OrchestraClient, approval: str
) -> None:
    scoped = f"scoped_{uuid.uuid4().hex[:8]}"
    await load_definition(
        app, _approval(scoped) | {"tenant": await ensure_tenant(app, "someone-else")}
    )
    for definition_id in (scoped, f"absent_{uuid.uuid4().hex[:8]}", "bad id/%"):
        with pytest.raises(Unprocessable) as unknown:
            await orchestra.start_process(definition_id)
        assert (unknown.value.code, unknown.value.http_status) == ("NOT_FOUND", 422)
        assert unknown.value.message.startswith("process definition ")
    with pytest.raises(Unprocessable) as absent:
        await orchestra.signal_token(str(uuid.uuid4()))
    assert (absent.value.code, absent.value.http_status) == ("NOT_FOUND", 422)

    instance_id = await orchestra.start_process(approval, {"amount": 1})
    token_id = await _parked(orchestra, instance_id)
    await orchestra.signal_token(token_id)
    with pytest.raises(Unprocessable) as again:  # moved on: that token is no more
        await orchestra.signal_token(token_id)
    assert (again.value.code, again.value.http_status) == ("NOT_FOUND", 422)

    tasked = f"tasked_{uuid.uuid4().hex[:8]}"
    await load_definition(
        app,
        {
            "id": tasked,
            "nodes": [
                {"id": "start", "type": "start"},
                {"id": "work", "type": "service_task", "job_type": "orchestra.clients"},
                {"id": "done", "type": "end"},
            ],
            "flows": [{"from": "start", "to": "work"}, {"from": "work", "to": "done"}],
        },
    )
    waiting = await orchestra.get_instance(await orchestra.start_process(tasked))
    [job_token] = waiting.tokens
    assert (job_token.node_id, job_token.status) == ("work", "waiting")
    assert job_token.job_id is not None
    with pytest.raises(Unprocessable) as not_parked:
        await orchestra.signal_token(job_token.id)
    assert (not_parked.value.code, not_parked.value.http_status) == ("FAILED_PRECONDITION", 422)
    assert not_parked.value.reason == "TOKEN_NOT_PARKED"
    with pytest.raises(Unprocessable) as finished:
        await orchestra.set_variable(instance_id, "late", 1)
    assert (finished.value.code, finished.value.http_status) == ("FAILED_PRECONDITION", 422)
    with pytest.raises(Unprocessable) as nowhere:
        await orchestra.set_variable(str(uuid.uuid4()), "x", 1)
    assert (nowhere.value.code, nowhere.value.http_status) == ("NOT_FOUND", 422)
    assert await orchestra.get_variables(instance_id) == {"amount": 1}


async def test_two_concurrent_signals_of_one_token_one_succeeds(
    orchestra: OrchestraClient, approval: str
) -> None:
    instance_id = await orchestra.start_process(approval, {"amount": 1})
    token_id = await _parked(orchestra, instance_id)
    results = await asyncio.gather(
        orchestra.signal_token(token_id), orchestra.signal_token(token_id), return_exceptions=True
    )
    assert sorted(type(result).__name__ for result in results) == ["NoneType", "Unprocessable"]
    assert (await orchestra.get_instance(instance_id)).status == "completed"


async def test_bad_input_is_invalid_argument_naming_the_field(
    orchestra: OrchestraClient, approval: str, tenant: str, app: Application
) -> None:
    instance_id = await orchestra.start_process(approval)
    for name in ("a/b", "a.b", "a[0]", "9lives", ".", "..", "x" * 129):
        with pytest.raises(InvalidArgument) as bad:
            await orchestra.set_variable(instance_id, name, 1)
        assert (bad.value.code, bad.value.http_status) == ("INVALID_ARGUMENT", 400), name
        assert [field for field, _ in bad.value.violations] == ["name"], (name, bad.value)
    with pytest.raises(InvalidArgument) as big:
        await orchestra.set_variable(instance_id, "big", "x" * (300 * 1024))
    assert big.value.http_status == 400
    for variables, field in (
        ({"a/b": 1}, "variables.a/b"),
        ({"9lives": 1}, "variables.9lives"),
        ({"big": "x" * (300 * 1024)}, "variables"),
    ):
        with pytest.raises(InvalidArgument) as refused:
            await orchestra.start_process(approval, variables)
        assert refused.value.http_status == 400
        assert [f for f, _ in refused.value.violations] == [field]
    token_id = await _parked(orchestra, instance_id)
    with pytest.raises(InvalidArgument):
        await orchestra.signal_token(token_id, {"a.b": 1})
    assert await _parked(orchestra, instance_id) == token_id  # not moved
    assert await orchestra.get_variables(instance_id) == {}
    assert [i.id for i in await orchestra.list_instances()] == [instance_id]  # none left behind

    # What no transport can carry is refused before any call, alike.
    for call, field in (
        (orchestra.set_variable(instance_id, "s", {1, 2}), "value"),  # type: ignore[arg-type]
        (orchestra.set_variable(instance_id, "n", float("nan")), "value"),
        (orchestra.start_process(approval, {"when": datetime.now(UTC)}), "variables.when"),
        (orchestra.start_process(""), "definition_id"),
        (orchestra.start_process(approval, [1]), "variables"),  # type: ignore[arg-type]
        (orchestra.signal_token("t", "x"), "variables"),  # type: ignore[arg-type]
        (orchestra.get_instance(""), "instance_id"),
        (orchestra.signal_token(""), "token_id"),
        (orchestra.set_variable(instance_id, "", 1), "name"),
    ):
        with pytest.raises(InvalidArgument) as local:
            await call
        assert (local.value.code, local.value.http_status) == ("INVALID_ARGUMENT", None)
        assert [f for f, _ in local.value.violations] == [field]


async def test_access_needs_the_permission_a_binding_and_valid_credentials(
    make_client: Factory, tokens: TokenFactory, tenant: str, approval: str, consumer: CreatedClient
) -> None:
    plain = make_client(await tokens.client(tenant), None)  # no permission
    with pytest.raises(PermissionDenied) as denied:
        await plain.list_instances()
    assert (denied.value.code, denied.value.http_status) == ("PERMISSION_DENIED", 403)
    assert "access orchestra api" in denied.value.message
    operator = make_client(
        await tokens.client(None, tenants=[tenant], permissions=[ORCHESTRA_PERMISSION]), None
    )
    with pytest.raises(PermissionDenied):
        await operator.start_process(approval)

    wrong = CreatedClient(client=consumer.client, client_secret="not-the-secret")
    with pytest.raises(Unauthenticated) as refused:
        await make_client(wrong, None).list_instances()
    assert refused.value.http_status == 401


async def test_token_is_reused_refreshed_before_expiry_and_renewed_after_a_401(
    make_client: Factory,
    consumer: CreatedClient,
    approval: str,
    http: httpx.AsyncClient,
) -> None:
    clock = FakeClock()
    orchestra = make_client(consumer, clock)
    assert isinstance(orchestra, LocalOrchestraClient | GrpcOrchestraClient | RemoteOrchestraClient)
    credentials = orchestra.credentials
    assert credentials is not None

    instance_id = await orchestra.start_process(approval)
    first = await credentials.authorization()
    await orchestra.get_instance(instance_id)
    assert await credentials.authorization() == first  # cached

    clock.now += 3600 - REFRESH_MARGIN_SECONDS  # the 1 h token is due for refresh
    await orchestra.get_instance(instance_id)
    second = await credentials.authorization()
    assert second != first

    revoked = await http.post(
        "/oauth/revoke",
        data={"token": second.removeprefix("Bearer ")},
        auth=(consumer.client.client_id, consumer.client_secret),
    )
    assert revoked.status_code == 200
    assert await orchestra.get_variables(instance_id) == {}  # refused 401, retried once
    third = await credentials.authorization()
    assert third not in (first, second)


async def test_a_revoked_token_without_credentials_is_unauthenticated(
    app: Application,
    grpc_target: str,
    http_base: str,
    http: httpx.AsyncClient,
    consumer: CreatedClient,
    make_client: Factory,
) -> None:
    response = await http.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": consumer.client.client_id,
            "client_secret": consumer.client_secret,
        },
    )
    token = response.json()["access_token"]
    await http.post(
        "/oauth/revoke",
        data={"token": token},
        auth=(consumer.client.client_id, consumer.client_secret),
    )
    clients: list[OrchestraClient] = [
        LocalOrchestraClient(app.gateway.upstream, access_token=token),
        GrpcOrchestraClient(grpc_target, access_token=token),
        RemoteOrchestraClient(http_base, access_token=token),
    ]
    try:
        errors = []
        for client in clients:
            with pytest.raises(Unauthenticated) as refused:
                await client.list_instances()
            errors.append((refused.value.code, refused.value.message, refused.value.http_status))
        assert errors == [("UNAUTHENTICATED", errors[0][1], 401)] * 3
    finally:
        for client in clients:
            await client.close()


async def test_three_transports_read_one_instance_identically(
    app: Application,
    grpc_target: str,
    http_base: str,
    consumer: CreatedClient,
    approval: str,
) -> None:
    remote = RemoteOrchestraClient(
        http_base, consumer.client.client_id, consumer.client_secret
    )  # the seed's own token form
    credentials = ClientCredentials(
        http_base + "/oauth/token", consumer.client.client_id, consumer.client_secret
    )
    local = LocalOrchestraClient(app.gateway.upstream, credentials=credentials)
    grpc_client = GrpcOrchestraClient(grpc_target, credentials=credentials)
    try:
        instance_id = await remote.start_process(approval, {"amount": 12, "x": [1.5, "y"]})
        reads: list[Callable[[OrchestraClient], Awaitable[object]]] = [
            lambda c: c.get_instance(instance_id),
            lambda c: c.get_variables(instance_id),
            lambda c: c.list_instances(definition_id=approval),
        ]
        for read in reads:
            seen = [await read(client) for client in (local, grpc_client, remote)]
            assert seen[0] == seen[1] == seen[2]
    finally:
        for client in (remote, local, grpc_client):
            await client.close()

"""Job sources end to end: the same scenarios over gRPC and REST, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
import string
import uuid

import httpx
import pytest
import sqlalchemy as sa

from clients.auth import ClientCredentials
from clients.base import CallerHeaders
from clients.errors import ApiError
from clients.sources import SourcesClient
from clients.transports.grpc import GrpcTransport
from clients.transports.rest import RestTransport
from server.app import Application
from server.storage.tables import AuditEntryRow, SourceRow, table_of
from tests.support.auth import TokenFactory


async def test_register_then_get_round_trips(sources_client: SourcesClient) -> None:
    created = await sources_client.register_source("nightly-scan", "scheduler")
    assert created.name == "nightly-scan"
    assert created.source_type == "scheduler"
    assert created.enabled is True
    assert created.paused is False
    assert uuid.UUID(created.source_id)
    assert created.created_at == created.updated_at
    assert created.created_at.seconds > 0

    fetched = await sources_client.get_source(created.source_id)
    assert fetched == created


async def test_register_disabled_source_and_filter(sources_client: SourcesClient) -> None:
    await sources_client.register_source("a-hook", "webhook", enabled=False)
    await sources_client.register_source("b-hook", "webhook")
    await sources_client.register_source("c-cron", "scheduler")

    hooks = await sources_client.list_sources(source_type="webhook")
    assert [s.name for s in hooks.items] == ["a-hook", "b-hook"]
    disabled = await sources_client.list_sources(enabled=False)
    assert [s.name for s in disabled.items] == ["a-hook"]
    enabled_hooks = await sources_client.list_sources(source_type="webhook", enabled=True)
    assert [s.name for s in enabled_hooks.items] == ["b-hook"]
    assert not enabled_hooks.HasField("continuation_token")


async def test_duplicate_name_is_already_exists(sources_client: SourcesClient) -> None:
    await sources_client.register_source("dup", "manual")
    with pytest.raises(ApiError) as err:
        await sources_client.register_source("dup", "webhook")
    assert err.value.code == "ALREADY_EXISTS"
    assert err.value.reason == "SOURCE_EXISTS"
    # Only a REST call has an HTTP status.
    rest = isinstance(sources_client.transport, RestTransport)
    assert err.value.http_status == (409 if rest else None)


async def test_pause_and_resume(sources_client: SourcesClient) -> None:
    created = await sources_client.register_source("pausable", "manual")
    paused = await sources_client.pause_source(created.source_id)
    assert paused.paused is True
    assert (await sources_client.get_source(created.source_id)).paused is True
    resumed = await sources_client.resume_source(created.source_id)
    assert resumed.paused is False


async def test_unknown_source_is_not_found(sources_client: SourcesClient) -> None:
    with pytest.raises(ApiError) as err:
        await sources_client.get_source("no-such-source")
    assert err.value.code == "NOT_FOUND"
    assert err.value.message == "source 'no-such-source' not found"
    # Only a REST call has an HTTP status.
    rest = isinstance(sources_client.transport, RestTransport)
    assert err.value.http_status == (404 if rest else None)


async def test_tenant_never_sees_another_tenants_sources(
    sources_client: SourcesClient, grpc_target: str, tokens: TokenFactory
) -> None:
    mine = await sources_client.register_source("mine", "manual")
    other = GrpcTransport(grpc_target)
    elsewhere = f"x-{uuid.uuid4().hex[:8]}"
    try:
        stranger = SourcesClient(
            other,
            CallerHeaders(
                tenant=elsewhere,
                access_token=await tokens.token(elsewhere),
                operator_reason="probe",
            ),
        )
        assert list((await stranger.list_sources()).items) == []
        with pytest.raises(ApiError) as err:
            await stranger.get_source(mine.source_id)
        assert err.value.code == "NOT_FOUND"
        with pytest.raises(ApiError) as err:
            await stranger.pause_source(mine.source_id)
        assert err.value.code == "NOT_FOUND"
    finally:
        await other.close()
    assert (await sources_client.get_source(mine.source_id)).paused is False


async def test_project_header_tags_and_narrows(sources_client: SourcesClient) -> None:
    sources_client.headers.project = "alpha"
    in_alpha = await sources_client.register_source("in-alpha", "manual")
    sources_client.headers.project = None
    untagged = await sources_client.register_source("untagged", "manual")

    sources_client.headers.project = "alpha"
    assert [s.name for s in (await sources_client.list_sources()).items] == ["in-alpha"]
    with pytest.raises(ApiError) as err:
        await sources_client.get_source(untagged.source_id)
    assert err.value.code == "NOT_FOUND"
    sources_client.headers.project = None
    names = [s.name for s in (await sources_client.list_sources()).items]
    assert names == ["in-alpha", "untagged"]
    assert (await sources_client.get_source(in_alpha.source_id)).name == "in-alpha"


def _random_name(rng: random.Random) -> str:
    alphabet = string.ascii_letters + string.digits + "-_ .éßЖ中"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 24))).strip() or "x"


async def test_pagination_through_500_sources_returns_each_once_in_order(
    grpc_target: str, http_base: str, tenant: str, access_token: str
) -> None:
    rng = random.Random(20261123)
    names = sorted({_random_name(rng) for _ in range(700)})[:500]
    rng.shuffle(names)
    writer = SourcesClient(
        GrpcTransport(grpc_target),
        CallerHeaders(tenant=tenant, operator_reason="seed", access_token=access_token),
    )
    registered = {}
    for name in names:
        source = await writer.register_source(name, "scheduler")
        registered[source.source_id] = name
    await writer.transport.close()
    expected = sorted((name, sid) for sid, name in registered.items())

    transports: tuple[GrpcTransport | RestTransport, ...] = (
        GrpcTransport(grpc_target),
        RestTransport(http_base),
    )
    for transport in transports:
        client = SourcesClient(transport, CallerHeaders(tenant=tenant, access_token=access_token))
        seen = [(s.name, s.source_id) async for s in client.iter_sources(limit=37)]
        await transport.close()
        assert seen == expected
        assert len(seen) == 500


async def test_limit_defaults_to_50_and_is_coerced_to_200(
    grpc_target: str, tenant: str, access_token: str
) -> None:
    client = SourcesClient(
        GrpcTransport(grpc_target),
        CallerHeaders(tenant=tenant, operator_reason="seed", access_token=access_token),
    )
    for i in range(230):
        await client.register_source(f"s{i:03d}", "manual")
    first = await client.list_sources()
    assert len(first.items) == 50
    big = await client.list_sources(limit=1000)
    assert len(big.items) == 200
    rest = await client.list_sources(limit=1000, continuation_token=big.continuation_token)
    assert len(rest.items) == 30
    assert not rest.HasField("continuation_token")
    await client.transport.close()


async def test_registration_writes_one_audit_entry_in_the_same_transaction(
    app: Application,
    http: httpx.AsyncClient,
    tenant: str,
    auth_headers: dict[str, str],
    tokens: TokenFactory,
) -> None:
    response = await http.post(
        "/jobengine/sources",
        json={"name": "audited", "sourceType": "webhook"},
        headers={
            **auth_headers,
            "X-Stella-Operator-Reason": "onboarding the registry",
            "X-Stella-Operator-Ticket": "OPS-42",
            "X-Stella-Trace-Id": "trace-audit-1",
        },
    )
    assert response.status_code == 201
    source = response.json()
    audit = table_of(AuditEntryRow)
    async with app.db.read() as conn:
        rows = (await conn.execute(sa.select(audit).where(audit.c.tenant_id == tenant))).all()
    assert len(rows) == 1
    entry = rows[0]
    assert entry.action == "sources.register"
    assert entry.resource == f"sources/{source['sourceId']}"
    assert entry.reason == "onboarding the registry"
    assert entry.ticket == "OPS-42"
    assert entry.trace_id == "trace-audit-1"
    assert entry.actor == (await tokens.client(tenant)).client.client_id
    assert entry.before is None
    assert '"name":"audited"' in entry.after


async def _count(app: Application, table: sa.Table, tenant: str) -> int:
    async with app.db.read() as conn:
        result = await conn.execute(
            sa.select(sa.func.count()).select_from(table).where(table.c.tenant_id == tenant)
        )
        return int(result.scalar_one())


async def test_rejected_mutations_write_nothing(
    app: Application, http: httpx.AsyncClient, tenant: str, auth_headers: dict[str, str]
) -> None:
    headers = {**auth_headers, "X-Stella-Operator-Reason": "test"}
    ok = await http.post(
        "/jobengine/sources", json={"name": "one", "sourceType": "manual"}, headers=headers
    )
    assert ok.status_code == 201
    attempts = [
        ({"name": "one", "sourceType": "manual"}, headers),  # duplicate
        ({"name": "two", "sourceType": "Not A Slug"}, headers),  # invalid type
        ({"name": "two", "sourceType": "manual"}, auth_headers),  # no reason
    ]
    for body, hdrs in attempts:
        response = await http.post("/jobengine/sources", json=body, headers=hdrs)
        assert response.status_code in (400, 409)
    assert await _count(app, table_of(SourceRow), tenant) == 1
    assert await _count(app, table_of(AuditEntryRow), tenant) == 1


@pytest.mark.parametrize("over", ["grpc", "rest"])
async def test_client_credentials_fetch_once_and_refresh_before_expiry(
    grpc_target: str, http_base: str, tenant: str, tokens: TokenFactory, over: str
) -> None:
    created = await tokens.client(tenant, ("orch:read", "orch:operate"))
    now = [1000.0]
    credentials = ClientCredentials(
        token_url=f"{http_base}/oauth/token",
        client_id=created.client.client_id,
        client_secret=created.client_secret,
        scopes=("orch:read", "orch:operate"),
        clock=lambda: now[0],
    )
    transport = GrpcTransport(grpc_target) if over == "grpc" else RestTransport(http_base)
    client = SourcesClient(
        transport, CallerHeaders(operator_reason="sdk test"), credentials=credentials
    )
    try:
        registered = await client.register_source("via-sdk", "manual")
        assert (await client.get_source(registered.source_id)).name == "via-sdk"
        first = await credentials.authorization()
        now[0] += 3600 - 31  # just outside the refresh margin: the same token
        assert await credentials.authorization() == first
        now[0] += 2  # inside the 30 s refresh margin of a 1 h token
        second = await credentials.authorization()
        assert second != first
        assert await credentials.authorization() == second
    finally:
        await transport.close()


async def test_client_credentials_with_a_wrong_secret_raise_invalid_client(
    http_base: str, tenant: str, tokens: TokenFactory
) -> None:
    created = await tokens.client(tenant)
    credentials = ClientCredentials(
        token_url=f"{http_base}/oauth/token",
        client_id=created.client.client_id,
        client_secret="not-the-secret",
    )
    with pytest.raises(ApiError) as err:
        await credentials.authorization()
    assert (err.value.code, err.value.http_status) == ("invalid_client", 401)


async def test_grpc_accepts_metadata_past_grpc_cores_default_limits(
    grpc_target: str, tenant: str, access_token: str
) -> None:
    """gRPC core refuses some calls with > 8 KiB of metadata by default; ours must not."""
    transport = GrpcTransport(grpc_target)
    client = SourcesClient(transport, CallerHeaders(tenant=tenant, access_token=access_token))
    original = client.headers.as_dict

    def padded() -> dict[str, str]:
        return {**original(), "X-Stella-Padding": "p" * 11_000}

    client.headers.as_dict = padded  # type: ignore[method-assign]
    try:
        for _ in range(20):  # the default soft limit refused about half of such calls
            assert list((await client.list_sources()).items) == []
    finally:
        await transport.close()

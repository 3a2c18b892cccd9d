"""The Python clients over all three transports (gRPC, REST, in-process) against a real
server: the same calls give the same values, pages and errors on each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from clients.audit import AuditClient
from clients.base import CallerHeaders
from clients.errors import ApiError
from clients.sources import SourcesClient
from clients.transports.base import Transport
from clients.transports.rest import RestTransport
from tests.support.auth import TokenFactory


def _http_status(transport: Transport, status: int) -> int | None:
    """Only a REST call has an HTTP status."""
    return status if isinstance(transport, RestTransport) else None


async def test_sources_pager_walks_every_page_in_order(sources_client: SourcesClient) -> None:
    names = ["e-five", "a-one", "d-four", "b-two", "c-three"]
    for name in names:
        await sources_client.register_source(name, "manual")

    pages = [page async for page in sources_client.iter_sources(limit=2).pages()]
    assert [[s.name for s in page.items] for page in pages] == [
        ["a-one", "b-two"],
        ["c-three", "d-four"],
        ["e-five"],
    ]
    assert [page.HasField("continuation_token") for page in pages] == [True, True, False]
    assert [s.name async for s in sources_client.iter_sources(limit=2)] == sorted(names)
    assert [s.name async for s in sources_client.iter_sources()] == sorted(names)


async def test_sources_pager_keeps_the_filters_on_every_page(
    sources_client: SourcesClient,
) -> None:
    for name in ("hook-1", "hook-2", "hook-3"):
        await sources_client.register_source(name, "webhook")
    await sources_client.register_source("hook-off", "webhook", enabled=False)
    await sources_client.register_source("cron-1", "scheduler")

    pager = sources_client.iter_sources(source_type="webhook", enabled=True, limit=1)
    assert [s.name async for s in pager] == ["hook-1", "hook-2", "hook-3"]
    assert [s.name async for s in pager] == ["hook-1", "hook-2", "hook-3"]  # walks again


async def test_audit_client_lists_what_the_sources_client_did(
    transport: Transport, caller_headers: CallerHeaders, tokens: TokenFactory, tenant: str
) -> None:
    caller_headers.operator_ticket = "OPS-7"
    caller_headers.trace_id = "trace-clients-1"
    sources = SourcesClient(transport, caller_headers)
    audit = AuditClient(transport, caller_headers)
    actor = (await tokens.client(tenant)).client.client_id
    started = datetime.now(UTC) - timedelta(seconds=1)
    created = await sources.register_source("audited", "manual")
    await sources.pause_source(created.source_id)
    await sources.resume_source(created.source_id)

    page = await audit.list_audit_entries()
    assert not page.HasField("continuation_token")
    assert [(e.action, e.resource) for e in page.items] == [
        ("sources.resume", f"sources/{created.source_id}"),
        ("sources.pause", f"sources/{created.source_id}"),
        ("sources.register", f"sources/{created.source_id}"),
    ]
    for entry in page.items:
        assert entry.tenant_id == tenant
        assert entry.actor == actor
        assert entry.reason == "test run"
        assert entry.ticket == "OPS-7"
        assert entry.trace_id == "trace-clients-1"
        assert entry.created_at.ToDatetime(UTC) >= started

    one_by_one = [e.action async for e in audit.iter_audit_entries(limit=1)]
    assert one_by_one == ["sources.resume", "sources.pause", "sources.register"]
    paused = await audit.list_audit_entries(action="sources.pause")
    assert [e.action for e in paused.items] == ["sources.pause"]
    assert [e.action async for e in audit.iter_audit_entries(until=started)] == []
    since = [e.action async for e in audit.iter_audit_entries(since=started, limit=2)]
    assert since == ["sources.resume", "sources.pause", "sources.register"]


async def test_errors_are_the_same_api_error_on_every_transport(
    transport: Transport, caller_headers: CallerHeaders
) -> None:
    sources = SourcesClient(transport, caller_headers)
    with pytest.raises(ApiError) as missing:
        await sources.get_source("no-such-source")
    assert missing.value.code == "NOT_FOUND"
    assert missing.value.message == "source 'no-such-source' not found"
    assert missing.value.reason == "SOURCE_NOT_FOUND"
    assert missing.value.http_status == _http_status(transport, 404)

    with pytest.raises(ApiError) as bad:
        await sources.list_sources(limit=-1)
    assert bad.value.code == "INVALID_ARGUMENT"
    assert bad.value.violations == [
        ("limit", "must not be negative (0 means the default of 50; above 200 means 200), got -1")
    ]
    assert bad.value.http_status == _http_status(transport, 400)

    with pytest.raises(ApiError) as deleted:  # DEL (0x7F) is a control character too
        await sources.register_source("rub\x7fout", "manual")
    assert deleted.value.code == "INVALID_ARGUMENT"
    assert deleted.value.violations == [
        ("name", "must not have surrounding blanks or control characters")
    ]
    assert deleted.value.http_status == _http_status(transport, 400)


async def test_an_anonymous_caller_is_unauthenticated_on_every_transport(
    transport: Transport, tenant: str
) -> None:
    audit = AuditClient(transport, CallerHeaders(tenant=tenant))
    with pytest.raises(ApiError) as refused:
        await audit.list_audit_entries()
    assert refused.value.code == "UNAUTHENTICATED"
    assert refused.value.message == "an access token is required"
    assert refused.value.http_status == _http_status(transport, 401)

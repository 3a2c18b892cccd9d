"""The audit trail below the transport: what `record` stores, and the listing's order,
filters and pagination, on a real SQLite file and PostgreSQL (the `database_url`
fixture), with entries whose times the tests choose."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command

from server.domain import audit
from server.domain.audit import AuditEntryLike
from server.domain.context import CallContext, ControlClaims
from server.domain.errors import InvalidArgument
from server.domain.pagination import PageTokens
from server.domain.resources import ResourceType
from server.domain.sources import SOURCE, Source
from server.storage.db import Database, alembic_config
from server.storage.store import SqlStore
from server.storage.tables import AuditEntryRow, table_of

T0 = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)
TOKENS = PageTokens(b"audit-test-secret-32-bytes-long!")


@pytest.fixture(scope="module")
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    await database.migrate()
    try:
        yield database
    finally:
        await database.dispose()


PAUSE = "/orchestrator.jobengine.v1.SourcesService/PauseSource"


def _call(tenant: str, **changes: Any) -> CallContext:
    return CallContext(method=PAUSE, trace_id="trace-1", tenant_id=tenant).with_(**changes)


def _source(tenant: str, *, paused: bool) -> Source:
    return Source(
        source_id="s-1",
        tenant_id=tenant,
        project_id=None,
        name="n",
        source_type="manual",
        enabled=True,
        paused=paused,
        created_at=T0,
        updated_at=T0,
    )


async def _seed(
    db: Database,
    tenant: str,
    *,
    at: datetime,
    entry_id: str | None = None,
    action: str = "sources.pause",
    actor: str = "client-a",
    resource: str = "sources/s1",
    trace_id: str = "trace-1",
) -> str:
    row = AuditEntryRow(
        entry_id=entry_id or str(uuid.uuid4()),
        tenant_id=tenant,
        actor=actor,
        action=action,
        resource=resource,
        reason="seeded",
        trace_id=trace_id,
        created_at=at,
    )
    async with db.transaction() as session:
        session.add(row)
    return row.entry_id


async def _list(
    db: Database,
    tenant: str,
    *,
    limit: int = 0,
    token: str = "",
    action: str = "",
    actor: str = "",
    resource: str = "",
    trace_id: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
) -> audit.AuditPage:
    return await audit.list_audit_entries(
        SqlStore(db),
        TOKENS,
        _call(tenant),
        action=action,
        actor=actor,
        resource=resource,
        trace_id=trace_id,
        since=since,
        until=until,
        limit=limit,
        continuation_token=token,
    )


def _ids(items: Sequence[AuditEntryLike]) -> list[str]:
    return [item.entry_id for item in items]


async def test_record_copies_the_call_and_token_justification(db: Database, tenant: str) -> None:
    call = _call(
        tenant,
        actor="client-7",
        token_id="jti-123",
        control=ControlClaims(
            quota_reason="raise for launch",
            quota_ticket="CAP-7",
            backfill_reason="replay outage",
            backfill_ticket="INC-9",
        ),
        operator_reason="pausing for maintenance",
        operator_ticket="OPS-1",
    )
    async with SqlStore(db).transaction() as uow:
        entry = await audit.record(
            uow,
            call,
            SOURCE,
            before=_source(tenant, paused=False),
            after=_source(tenant, paused=True),
        )
    table = table_of(AuditEntryRow)
    async with db.read() as conn:
        row = (await conn.execute(sa.select(table).where(table.c.tenant_id == tenant))).one()
    assert row.entry_id == entry.entry_id
    assert uuid.UUID(row.entry_id).version == 4
    assert (row.actor, row.action, row.resource) == ("client-7", "sources.pause", "sources/s-1")
    assert (row.reason, row.ticket) == ("pausing for maintenance", "OPS-1")
    assert row.token_id == "jti-123"
    assert (row.quota_reason, row.quota_ticket) == ("raise for launch", "CAP-7")
    assert (row.backfill_reason, row.backfill_ticket) == ("replay outage", "INC-9")
    assert row.trace_id == "trace-1"
    assert row.before == (
        '{"enabled":true,"name":"n","paused":false,"projectId":null,'
        '"sourceId":"s-1","sourceType":"manual"}'
    )
    assert row.after == (
        '{"enabled":true,"name":"n","paused":true,"projectId":null,'
        '"sourceId":"s-1","sourceType":"manual"}'
    )


async def test_record_without_token_claims_stores_nulls(db: Database, tenant: str) -> None:
    register = _call(tenant, method="/orchestrator.jobengine.v1.SourcesService/RegisterSource")
    async with SqlStore(db).transaction() as uow:
        await audit.record(uow, register, SOURCE, before=None, after=_source(tenant, paused=False))
    [item] = (await _list(db, tenant)).items
    assert (item.action, item.resource) == ("sources.register", "sources/s-1")
    assert item.actor == "anonymous"
    assert (item.reason, item.ticket, item.token_id) == (None, None, None)
    assert (item.quota_reason, item.quota_ticket) == (None, None)
    assert (item.backfill_reason, item.backfill_ticket) == (None, None)
    assert item.before is None
    assert item.after is not None and '"paused":false' in item.after


async def test_entry_rolls_back_with_its_change(db: Database, tenant: str) -> None:
    class Failed(Exception):
        pass

    with pytest.raises(Failed):
        async with SqlStore(db).transaction() as uow:
            source = _source(tenant, paused=False)
            await audit.record(uow, _call(tenant), SOURCE, before=source, after=source)
            await uow.session.flush()  # the row reached the database, inside the transaction
            raise Failed
    assert (await _list(db, tenant)).items == []


async def test_pages_walk_newest_first_each_entry_once(db: Database, tenant: str) -> None:
    """Times repeat in threes, so the entry id must break ties, page boundaries included."""
    seeded: list[tuple[datetime, str]] = []
    for i in range(61):
        at = T0 + timedelta(seconds=i // 3)
        seeded.append((at, await _seed(db, tenant, at=at)))
    expected = [entry_id for _, entry_id in sorted(seeded, reverse=True)]

    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await _list(db, tenant, limit=7, token=token)
        seen.extend(_ids(page.items))
        pages += 1
        if page.continuation_token is None:
            break
        token = page.continuation_token
    assert seen == expected
    assert pages == 9  # 8 full pages of 7 and one of 5
    newest = [_utc(item.created_at) for item in (await _list(db, tenant, limit=3)).items]
    assert newest == [T0 + timedelta(seconds=s) for s in (20, 19, 19)]


async def test_ties_order_by_entry_id_descending(db: Database, tenant: str) -> None:
    ids = ["00000000-a", "00000000-B", "00000000-b", "0000000-zz", "ffffffff-0"]
    for entry_id in ids:
        await _seed(db, tenant, at=T0, entry_id=f"{tenant}-{entry_id}")
    listed = _ids((await _list(db, tenant)).items)
    # Byte-wise on both backends: "B" < "a" < "b", "-" < "0".
    assert listed == sorted((f"{tenant}-{i}" for i in ids), reverse=True)


async def test_entry_ids_compare_byte_wise_on_every_backend(db: Database) -> None:
    """The test databases default to C.UTF-8, so the order test alone cannot tell the
    migration's collation from the server default: read the schema itself."""
    async with db.read() as conn:
        if db.is_sqlite:
            ddl = (
                await conn.execute(
                    sa.text("SELECT sql FROM sqlite_master WHERE name = 'audit_entries'")
                )
            ).scalar_one()
            assert "COLLATE" not in ddl.upper()  # SQLite's default, BINARY
        else:
            collation = (
                await conn.execute(
                    sa.text(
                        "SELECT collation_name FROM information_schema.columns"
                        " WHERE table_name = 'audit_entries' AND column_name = 'entry_id'"
                    )
                )
            ).scalar_one()
            assert collation == "C"


async def test_limit_default_coercion_and_refusal(db: Database, tenant: str) -> None:
    for i in range(205):
        await _seed(db, tenant, at=T0 + timedelta(milliseconds=i))
    assert len((await _list(db, tenant)).items) == 50
    coerced = await _list(db, tenant, limit=10_000)
    assert len(coerced.items) == 200
    assert coerced.continuation_token is not None
    rest = await _list(db, tenant, limit=10_000, token=coerced.continuation_token)
    assert len(rest.items) == 5
    assert rest.continuation_token is None
    with pytest.raises(InvalidArgument) as err:
        await _list(db, tenant, limit=-1)
    assert [v.field for v in err.value.violations] == ["limit"]


async def test_filters_are_exact_and_combine(db: Database, tenant: str) -> None:
    pause = await _seed(db, tenant, at=T0, action="sources.pause", trace_id="tr-1")
    resume = await _seed(
        db, tenant, at=T0 + timedelta(seconds=1), action="sources.resume", actor="client-b"
    )
    other = await _seed(
        db, tenant, at=T0 + timedelta(seconds=2), resource="sources/s2", trace_id="tr-2"
    )
    assert _ids((await _list(db, tenant, action="sources.pause")).items) == [other, pause]
    assert _ids((await _list(db, tenant, action="sources")).items) == []
    assert _ids((await _list(db, tenant, actor="client-b")).items) == [resume]
    assert _ids((await _list(db, tenant, resource="sources/s1")).items) == [resume, pause]
    assert _ids((await _list(db, tenant, trace_id="tr-2")).items) == [other]
    both = await _list(db, tenant, action="sources.pause", resource="sources/s1")
    assert _ids(both.items) == [pause]


async def test_since_is_inclusive_and_until_exclusive(db: Database, tenant: str) -> None:
    ids = [await _seed(db, tenant, at=T0 + timedelta(seconds=s)) for s in range(5)]
    window = await _list(
        db, tenant, since=T0 + timedelta(seconds=1), until=T0 + timedelta(seconds=3)
    )
    assert _ids(window.items) == [ids[2], ids[1]]
    assert _ids((await _list(db, tenant, since=T0 + timedelta(seconds=4))).items) == [ids[4]]
    assert _ids((await _list(db, tenant, until=T0 + timedelta(seconds=1))).items) == [ids[0]]
    micro = await _list(db, tenant, since=T0 + timedelta(seconds=3, microseconds=1))
    assert _ids(micro.items) == [ids[4]]


async def test_tenants_never_see_each_other(db: Database, tenant: str) -> None:
    mine = await _seed(db, tenant, at=T0)
    theirs = await _seed(db, f"{tenant}-other", at=T0)
    assert _ids((await _list(db, tenant)).items) == [mine]
    assert _ids((await _list(db, f"{tenant}-other")).items) == [theirs]


async def test_token_is_bound_to_tenant_and_filters(db: Database, tenant: str) -> None:
    for s in range(3):
        await _seed(db, tenant, at=T0 + timedelta(seconds=s))
    first = await _list(db, tenant, limit=1, action="sources.pause", since=T0)
    token = first.continuation_token
    assert token is not None
    second = await _list(db, tenant, limit=1, action="sources.pause", since=T0, token=token)
    assert len(second.items) == 1
    changes: list[dict[str, Any]] = [
        {"action": "sources.resume", "since": T0},
        {"action": "sources.pause"},
        {"action": "sources.pause", "since": T0 + timedelta(microseconds=1)},
        {"action": "sources.pause", "since": T0, "actor": "client-a"},
        {"action": "sources.pause", "since": T0, "until": T0 + timedelta(days=1)},
    ]
    for change in changes:
        with pytest.raises(InvalidArgument) as err:
            await _list(db, tenant, limit=1, token=token, **change)
        assert err.value.reason == "PAGE_TOKEN_MISMATCH", change
        assert [v.field for v in err.value.violations] == ["continuationToken"]
    with pytest.raises(InvalidArgument) as err:
        await _list(db, f"{tenant}-x", limit=1, action="sources.pause", since=T0, token=token)
    assert err.value.reason == "PAGE_TOKEN_MISMATCH"


async def test_tampered_token_is_refused(db: Database, tenant: str) -> None:
    for s in range(2):
        await _seed(db, tenant, at=T0 + timedelta(seconds=s))
    token = (await _list(db, tenant, limit=1)).continuation_token
    assert token is not None
    body, _, signature = token.partition(".")
    tampered = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1] + "." + signature
    with pytest.raises(InvalidArgument) as err:
        await _list(db, tenant, limit=1, token=tampered)
    assert err.value.reason == "INVALID_PAGE_TOKEN"
    assert [v.field for v in err.value.violations] == ["continuationToken"]


@pytest.mark.parametrize(
    "key",
    [("name", "id"), (1.5, "id"), (True, "id"), (1, 2), (1,), (10**20, "id")],
    ids=["strings", "float", "bool", "int-id", "short", "out-of-range"],
)
async def test_signed_token_of_another_shape_is_refused(
    db: Database, tenant: str, key: tuple[Any, ...]
) -> None:
    """Well signed and bound, but not a position in this listing (a server bug or a key
    leak): refused as the caller's bad token, never a 500."""
    binding = {
        "list": "audit",
        "tenant": tenant,
        "action": None,
        "actor": None,
        "resource": None,
        "traceId": None,
        "since": None,
        "until": None,
        "sort": ("-createdAt", "-entryId"),
    }
    token = TOKENS.encode(key, binding=binding)
    with pytest.raises(InvalidArgument) as err:
        await _list(db, tenant, token=token)
    assert str(err.value) == "continuationToken: does not point into this listing"


@pytest.mark.parametrize(
    ("filters", "fields"),
    [
        ({"action": "a" * 201}, ["action"]),
        ({"actor": "x\x00y"}, ["actor"]),
        ({"resource": "r" * 401, "traceId": "t\n"}, ["resource", "traceId"]),
        ({"since": T0, "until": T0}, ["until"]),
        ({"since": T0 + timedelta(seconds=1), "until": T0}, ["until"]),
    ],
    ids=["long-action", "nul-actor", "two-at-once", "empty-window", "inverted-window"],
)
async def test_bad_filters_name_every_field(
    db: Database, tenant: str, filters: dict[str, Any], fields: list[str]
) -> None:
    if "traceId" in filters:
        filters["trace_id"] = filters.pop("traceId")
    with pytest.raises(InvalidArgument) as err:
        await _list(db, tenant, **filters)
    assert [v.field for v in err.value.violations] == fields


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


async def test_migration_0003_downgrades_and_upgrades_on_sqlite(tmp_path: Path) -> None:
    """Upgrade is exercised by every test; the way back must work too, and keep rows."""
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'migrate.db'}")
    added = {"token_id", "quota_reason", "quota_ticket", "backfill_reason", "backfill_ticket"}
    try:
        await database.migrate()
        await _seed(database, "t-migrate", at=T0, entry_id="kept")
        async with database.engine.begin() as conn:
            await conn.run_sync(_alembic, "downgrade", "0002")
            assert added.isdisjoint(await conn.run_sync(_columns))
        await database.migrate()
        async with database.engine.connect() as conn:
            assert added <= await conn.run_sync(_columns)
            assert await conn.run_sync(_indexes) == {"ix_audit_tenant_time_id"}
        assert _ids((await _list(database, "t-migrate")).items) == ["kept"]
    finally:
        await database.dispose()


def _alembic(connection: sa.Connection, action: str, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    getattr(command, action)(cfg, revision)


def _columns(connection: sa.Connection) -> set[str]:
    return {column["name"] for column in sa.inspect(connection).get_columns("audit_entries")}


def _indexes(connection: sa.Connection) -> set[str]:
    return {str(index["name"]) for index in sa.inspect(connection).get_indexes("audit_entries")}


@pytest.mark.parametrize(
    ("method", "collection", "singular", "action"),
    [
        (
            "/orchestrator.jobengine.v1.SourcesService/RegisterSource",
            "sources",
            "source",
            "sources.register",
        ),
        (
            "/orchestrator.jobengine.v1.SourcesService/PauseSource",
            "sources",
            "source",
            "sources.pause",
        ),
        (
            "/orchestrator.jobengine.v1.SourcesService/ResumeSource",
            "sources",
            "source",
            "sources.resume",
        ),
        (
            "/p.DeadLetterService/ReplayPendingDeadLetterEntries",
            "deadLetterEntries",
            "dead-letter entry",
            "deadLetterEntries.replay_pending",
        ),
        ("/p.QuotasService/PauseQuota", "quotas", "quota", "quotas.pause"),
        ("/p.JobsService/RecalcQuality", "jobs", "job", "jobs.recalc_quality"),
    ],
    ids=["register", "pause", "resume", "plural-multiword", "quota", "no-noun"],
)
def test_action_is_the_method_without_the_resource_words(
    method: str, collection: str, singular: str, action: str
) -> None:
    resource = ResourceType(singular, collection, "id", id_of=str, snapshot=lambda _: {})
    assert audit.action_name(method, resource) == action

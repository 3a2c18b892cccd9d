"""Client registration rules and lifecycle, on a real (SQLite) database."""

from __future__ import annotations

import pytest

from server.domain.errors import AlreadyExists, InvalidArgument, NotFound
from server.identity.authorization_server import clients
from server.identity.authorization_server.passwords import verify_secret
from server.storage.db import Database
from server.storage.tables import TenantRow


@pytest.fixture
async def tenants(db: Database) -> None:
    async with db.transaction() as session:
        for tenant in ("acme", "globex"):
            session.add(TenantRow(tenant_id=tenant, display_name=tenant))


async def test_bound_client_is_created_with_a_secret_shown_once(
    db: Database, tenants: None
) -> None:
    created = await clients.create_client(
        db,
        scopes=["orch:quota", "orch:read", "orch:read"],
        tenant="acme",
        permissions=["access orchestra api"],
        require_dpop=True,
        display_name="Remote site",
    )
    client = created.client
    assert client.client_id.startswith("orch-")
    assert client.scopes == ("orch:read", "orch:quota")  # canonical order, no duplicates
    assert (client.tenant, client.tenants, client.is_operator) == ("acme", (), False)
    assert client.require_dpop and not client.disabled
    stored = await clients.find_credentials(db, client_id=client.client_id)
    assert stored is not None
    assert stored.secret_hash != created.client_secret
    assert verify_secret(created.client_secret, stored.secret_hash)


async def test_operator_client_lists_tenants(db: Database, tenants: None) -> None:
    created = await clients.create_client(
        db, scopes=["orch:admin"], tenants=["acme", "globex", "acme"], client_id="ops-1"
    )
    assert created.client.is_operator
    assert created.client.tenants == ("acme", "globex")
    platform = await clients.create_client(db, scopes=["orch:admin"], client_id="platform")
    assert platform.client.is_operator and platform.client.tenants == ()


@pytest.mark.parametrize(
    ("kwargs", "field", "text"),
    [
        ({"scopes": ["orch:read", "orch:write"], "tenant": "acme"}, "scopes", "'orch:write'"),
        ({"scopes": [], "tenant": "acme", "permissions": ["root"]}, "permissions", "'root'"),
        ({"scopes": [], "tenant": "nowhere"}, "tenant", "nowhere"),
        ({"scopes": [], "tenants": ["acme", "nowhere"]}, "tenants", "nowhere"),
        ({"scopes": [], "tenant": "acme", "tenants": ["globex"]}, "tenants", "bound"),
        ({"scopes": [], "tenant": "acme", "client_id": "a b"}, "client_id", "letters"),
        ({"scopes": [], "tenant": "acme", "display_name": "x" * 201}, "display_name", "200"),
    ],
    ids=[
        "unknown-scope",
        "unknown-permission",
        "missing-tenant",
        "missing-operator-tenant",
        "bound-and-operator",
        "bad-id",
        "long-name",
    ],
)
async def test_invalid_registrations_name_the_field(
    db: Database, tenants: None, kwargs: dict[str, object], field: str, text: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await clients.create_client(db, **kwargs)  # type: ignore[arg-type]
    assert field in [v.field for v in caught.value.violations]
    assert text in caught.value.message


async def test_duplicate_client_id_already_exists(db: Database, tenants: None) -> None:
    await clients.create_client(db, scopes=[], tenant="acme", client_id="dup")
    with pytest.raises(AlreadyExists):
        await clients.create_client(db, scopes=[], tenant="acme", client_id="dup")


async def test_rotate_disable_and_list(db: Database, tenants: None) -> None:
    first = await clients.create_client(db, scopes=["orch:read"], tenant="acme", client_id="b-1")
    await clients.create_client(db, scopes=["orch:read"], tenant="globex", client_id="a-1")
    rotated = await clients.rotate_secret(db, client_id="b-1")
    assert rotated.client_secret != first.client_secret
    stored = await clients.find_credentials(db, client_id="b-1")
    assert stored is not None
    assert verify_secret(rotated.client_secret, stored.secret_hash)
    assert not verify_secret(first.client_secret, stored.secret_hash)
    assert (await clients.disable_client(db, client_id="b-1")).disabled
    assert (await clients.disable_client(db, client_id="b-1")).disabled  # idempotent
    listed = await clients.list_clients(db)
    assert [(c.client_id, c.disabled) for c in listed] == [("a-1", False), ("b-1", True)]
    for action in (clients.rotate_secret, clients.disable_client, clients.get_client):
        with pytest.raises(NotFound):
            await action(db, client_id="nobody")

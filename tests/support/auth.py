"""Real access tokens for tests: real clients in the test database, tokens from the real
`POST /oauth/token` endpoint, cached per (tenant, scopes, extra form fields).

Every tenant-scoped call needs a bearer token once authentication is enforced; minting
them through the token endpoint keeps the tests honest about what a caller must do.
"""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from server.app import Application
from server.identity.authorization_server import clients
from server.identity.authorization_server.clients import CreatedClient
from server.storage.tables import TenantRow

TOKEN_PATH = "/oauth/token"
# Every tenant-level scope without a justification requirement (seed 003).
DEFAULT_SCOPES: tuple[str, ...] = ("orch:read", "orch:operate")


async def ensure_tenant(app: Application, tenant: str) -> str:
    async with app.db.transaction() as session:
        if await session.get(TenantRow, tenant) is None:
            session.add(TenantRow(tenant_id=tenant, display_name=tenant))
    return tenant


def token_form(created: CreatedClient, **extra: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_id": created.client.client_id,
        "client_secret": created.client_secret,
        **extra,
    }


class TokenFactory:
    def __init__(self, app: Application, http_base: str) -> None:
        self.app = app
        self.http_base = http_base
        self._clients: dict[tuple[object, ...], CreatedClient] = {}
        self._tokens: dict[tuple[object, ...], str] = {}

    async def client(
        self,
        tenant: str | None,
        scopes: Sequence[str] = DEFAULT_SCOPES,
        *,
        tenants: Sequence[str] = (),
        permissions: Sequence[str] = (),
        require_dpop: bool = False,
    ) -> CreatedClient:
        """A client bound to `tenant` (or, with tenant None, an operator of `tenants`)."""
        key = (tenant, tuple(scopes), tuple(tenants), tuple(permissions), require_dpop)
        created = self._clients.get(key)
        if created is None:
            for name in (tenant, *tenants):
                if name is not None:
                    await ensure_tenant(self.app, name)
            created = await clients.create_client(
                self.app.db,
                scopes=scopes,
                tenant=tenant,
                tenants=tenants,
                permissions=permissions,
                require_dpop=require_dpop,
            )
            self._clients[key] = created
        return created

    async def issue(self, created: CreatedClient, **form: str) -> str:
        """A fresh token for `created` from the token endpoint (never cached)."""
        async with httpx.AsyncClient(base_url=self.http_base, timeout=30) as http:
            response = await http.post(TOKEN_PATH, data=token_form(created, **form))
        if response.status_code != 200:
            raise AssertionError(f"token request failed: {response.status_code} {response.text}")
        token: str = response.json()["access_token"]
        return token

    async def token(
        self,
        tenant: str | None,
        scopes: Sequence[str] = DEFAULT_SCOPES,
        *,
        tenants: Sequence[str] = (),
        permissions: Sequence[str] = (),
        **form: str,
    ) -> str:
        """A cached access token of a client with exactly these grants; `form` adds token
        request fields (e.g. `quota_reason`), which become claims."""
        key = (
            tenant,
            tuple(scopes),
            tuple(tenants),
            tuple(permissions),
            tuple(sorted(form.items())),
        )
        token = self._tokens.get(key)
        if token is None:
            created = await self.client(tenant, scopes, tenants=tenants, permissions=permissions)
            token = await self.issue(created, scope=" ".join(scopes), **form)
            self._tokens[key] = token
        return token

    async def headers(
        self, tenant: str, scopes: Sequence[str] = DEFAULT_SCOPES, **form: str
    ) -> dict[str, str]:
        """Authorization and tenant headers of a client bound to `tenant`."""
        token = await self.token(tenant, scopes, **form)
        return {"Authorization": f"Bearer {token}", "X-Stella-Tenant": tenant}

"""Security fixtures: two tenants, real tokens minted once per backend, forged tokens,
and one gRPC channel and one HTTP client shared by every security test.

Everything expensive (clients, tokens, DPoP-bound tokens, revocations) is cached on
the session-scoped `Security` object, which exists once per database backend.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import grpc
import httpx
import pytest
from joserfc.jwk import ECKey

from orchestrator.api.v1 import options_pb2
from server.app import Application
from server.identity.authorization_server import clients
from server.identity.authorization_server.clients import CreatedClient
from server.identity.scopes import JUSTIFIED, JUSTIFIED_SCOPES, SCOPES
from server.identity.urls import REVOCATION_PATH, TOKEN_PATH
from server.interceptors.audit import REASON_HEADER
from server.interceptors.tenancy import TENANT_HEADER
from tests.integration.security import forge
from tests.integration.security.surface import SURFACE, SecuredMethod, Target, call
from tests.support.auth import TokenFactory, ensure_tenant, token_form
from tests.unit.identity.proofs import client_key, make_proof

Headers = list[tuple[str, str]]


def justification(scopes: Sequence[str]) -> dict[str, str]:
    """The seed-003 form fields a token request for `scopes` must carry."""
    return {j.reason_field: "security tests" for j in JUSTIFIED if j.scope in scopes}


def other_scope(method: SecuredMethod) -> str | None:
    """A real scope the method does not require (None when it requires them all), one
    that needs no seed-003 justification when there is such."""
    others = [s for s in SCOPES if s not in method.policy.scopes]
    others.sort(key=lambda scope: scope in JUSTIFIED_SCOPES)
    return others[0] if others else None


@dataclass(frozen=True, slots=True)
class DpopToken:
    token: str
    key: ECKey


@dataclass
class Security:
    app: Application
    tokens: TokenFactory
    http: httpx.AsyncClient
    channel: grpc.aio.Channel
    tenant_a: str
    tenant_b: str
    _tokens: dict[tuple[object, ...], str] = field(default_factory=dict)
    _dpop: dict[tuple[object, ...], DpopToken] = field(default_factory=dict)
    _revoked: dict[str, tuple[str, float]] = field(default_factory=dict)
    _disabled: dict[bool, tuple[str, float]] | None = None  # by platform, see is_platform

    @property
    def public_url(self) -> str:
        return self.app.settings.public_url

    # --- real tokens -------------------------------------------------------------------

    async def client(
        self,
        scopes: Sequence[str],
        *,
        tenant: str | None = None,
        tenants: Sequence[str] = (),
        permissions: Sequence[str] = (),
        platform: bool = False,
    ) -> CreatedClient:
        """Bound to `tenant` (default A), an operator of `tenants`, or with `platform` an
        operator of no tenant (what platform-level methods need)."""
        bound = None if platform else self.tenant_a if tenant is None and not tenants else tenant
        return await self.tokens.client(
            bound, tuple(scopes), tenants=tuple(tenants), permissions=tuple(permissions)
        )

    async def token(
        self,
        scopes: Sequence[str],
        *,
        tenant: str | None = None,
        tenants: Sequence[str] = (),
        permissions: Sequence[str] = (),
        platform: bool = False,
    ) -> str:
        """A cached real token: bound to `tenant` (default A), an operator of `tenants`, or
        with `platform` an operator of no tenant."""
        key = (tuple(scopes), tenant, tuple(tenants), tuple(permissions), platform)
        token = self._tokens.get(key)
        if token is None:
            created = await self.client(
                scopes, tenant=tenant, tenants=tenants, permissions=permissions, platform=platform
            )
            form = justification(scopes)
            if scopes:
                form["scope"] = " ".join(scopes)
            token = await self.tokens.issue(created, **form)
            self._tokens[key] = token
        return token

    async def method_token(self, method: SecuredMethod, *, tenant: str | None = None) -> str:
        """A token with exactly what `method` requires, bound to `tenant` (default A); for
        a platform-level method (without `tenant`), an operator client's of no tenant."""
        policy = method.policy
        platform = tenant is None and is_platform(method)
        return await self.token(
            policy.scopes, tenant=tenant, permissions=policy.permissions, platform=platform
        )

    async def operator_token(self, method: SecuredMethod) -> str:
        """What `method` requires, for an operator client allowed tenant A only."""
        policy = method.policy
        return await self.token(
            policy.scopes, tenants=(self.tenant_a,), permissions=policy.permissions
        )

    async def dpop_token(self, method: SecuredMethod) -> DpopToken:
        """A DPoP-bound token (RFC 9449 §5) with what `method` requires."""
        policy = method.policy
        platform = is_platform(method)
        cache_key = (policy.scopes, policy.permissions, platform)
        found = self._dpop.get(cache_key)
        if found is None:
            created = await self.client(
                policy.scopes, permissions=policy.permissions, platform=platform
            )
            key = client_key()
            token_url = self.app.identity.urls.endpoint(TOKEN_PATH)
            proof = make_proof(key, htu=token_url, iat=self.server_now())
            form = token_form(created, **justification(policy.scopes))
            if policy.scopes:
                form["scope"] = " ".join(policy.scopes)
            response = await self.http.post(TOKEN_PATH, data=form, headers={"DPoP": proof})
            assert response.status_code == 200, response.text
            assert response.json()["token_type"] == "DPoP"
            found = DpopToken(response.json()["access_token"], key)
            self._dpop[cache_key] = found
        return found

    def proof(self, dpop: DpopToken, target: Target, *, path: str | None = None) -> str:
        """A fresh proof for one call of `target` (proofs are single use)."""
        url = self.public_url + (path if path is not None else target.path)
        return make_proof(
            dpop.key,
            htm=target.http_method,
            htu=url,
            access_token=dpop.token,
            iat=self.server_now(),
        )

    def server_now(self) -> int:
        """The server's time (seconds since the epoch), which tests move forward (the
        revocation cases do, by MAX_AGE_SECONDS per method): proofs dated by it stay in
        the 60 s DPoP window however far the suite has moved the clock."""
        return int(self.app.clocks.wall())

    async def revoked_token(self, method: SecuredMethod) -> tuple[str, float]:
        """A fresh token with what `method` requires, revoked through POST /oauth/revoke
        with its client's credentials; and when (time.monotonic) it was revoked."""
        found = self._revoked.get(method.full_method)
        if found is None:
            policy = method.policy
            created = await self.client(
                policy.scopes, permissions=policy.permissions, platform=is_platform(method)
            )
            form = justification(policy.scopes)
            if policy.scopes:
                form["scope"] = " ".join(policy.scopes)
            token = await self.tokens.issue(created, **form)
            await self.accepted(method, token)  # remembered as verified, then revoked
            response = await self.http.post(
                REVOCATION_PATH,
                data={"token": token},
                auth=(created.client.client_id, created.client_secret),
            )
            assert (response.status_code, response.content) == (200, b"{}"), response.text
            found = (token, time.monotonic())
            self._revoked[method.full_method] = found
        return found

    async def disabled_client_token(self, method: SecuredMethod) -> tuple[str, float]:
        """A token of a client of its own holding every scope and permission the surface
        requires, disabled afterwards (as `orchestrator clients disable` does, from
        another process); and when (time.monotonic) it was disabled. One client bound to
        tenant A for every method and one operator client of no tenant for the
        platform-level ones, disabled together, so the suite waits for one
        revocation-list reload, not one each."""
        if self._disabled is None:
            scopes = tuple(s for s in SCOPES if any(s in m.policy.scopes for m in SURFACE))
            permissions = tuple(sorted({p for m in SURFACE for p in m.policy.permissions}))
            await ensure_tenant(self.app, self.tenant_a)
            form = justification(scopes)
            if scopes:
                form["scope"] = " ".join(scopes)
            created: dict[bool, CreatedClient] = {}
            tokens: dict[bool, str] = {}
            for platform in (False, True):
                created[platform] = await clients.create_client(
                    self.app.db,
                    scopes=scopes,
                    tenant=None if platform else self.tenant_a,
                    permissions=permissions,
                )
                tokens[platform] = await self.tokens.issue(created[platform], **form)
            for each in SURFACE:  # remembered as verified, then the clients are disabled
                await self.accepted(each, tokens[is_platform(each)])
            for platform in (False, True):
                client_id = created[platform].client.client_id
                await clients.disable_client(self.app.db, client_id=client_id)
            disabled_at = time.monotonic()
            self._disabled = {platform: (tokens[platform], disabled_at) for platform in tokens}
        return self._disabled[is_platform(method)]

    async def accepted(self, method: SecuredMethod, token: str) -> None:
        """Use `token` once on `method` (over REST), asserting it gets past authentication."""
        target = method.targets[-1]
        headers = [*self.context_headers(method), ("Authorization", f"Bearer {token}")]
        outcome = await call(target, headers, channel=self.channel, http=self.http)
        assert not outcome.refused_by_authentication, (target.label, outcome)

    # --- forged tokens -----------------------------------------------------------------

    async def signing_key(self) -> ECKey:
        return await self.app.identity.keys.signing_key()

    async def base_claims(self, method: SecuredMethod) -> dict[str, object]:
        """The claims of a real token for `method`, to forge from."""
        return forge.claims_of(await self.method_token(method))

    # --- headers -----------------------------------------------------------------------

    def context_headers(self, method: SecuredMethod, *, tenant: str | None = None) -> Headers:
        """Everything but credentials that a correct call of `method` sends: the tenant
        header (tenant A unless told) and, for audited methods, an operator reason."""
        headers: Headers = [(TENANT_HEADER, tenant or self.tenant_a)]
        if method.policy.operator_audit:
            headers.append((REASON_HEADER, "security tests"))
        return headers


def is_platform(method: SecuredMethod) -> bool:
    """Whether only operator clients (bound to no tenant) may call `method`."""
    return method.policy.tenant_mode == options_pb2.TENANT_MODE_PLATFORM


@pytest.fixture(scope="session")
async def security(
    app: Application, tokens: TokenFactory, http_base: str, grpc_target: str
) -> AsyncIterator[Security]:
    suffix = uuid.uuid4().hex[:8]
    async with (
        httpx.AsyncClient(base_url=http_base, timeout=30) as http,
        grpc.aio.insecure_channel(grpc_target) as channel,
    ):
        yield Security(
            app=app,
            tokens=tokens,
            http=http,
            channel=channel,
            tenant_a=f"sec-a-{suffix}",
            tenant_b=f"sec-b-{suffix}",
        )

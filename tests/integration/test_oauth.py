"""The OAuth 2.0 authorization server over REST and gRPC (DESIGN.md §4.3, §4.5, seed 003):
exact bodies and headers, RFC 6749 errors, DPoP, introspection, revocation, discovery,
and the `clients`/`keys` commands and `serve --dev` credentials as shipped."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2, status_pb2

from orchestrator.identity.v1 import oauth_pb2, oauth_service_pb2_grpc
from server.app import Application
from server.identity.authorization_server import clients
from server.identity.authorization_server.clients import CreatedClient
from server.identity.dpop import DpopVerifier
from server.identity.resource_server.verifier import TokenRejected, TokenVerifier
from server.identity.revocation import MAX_AGE_SECONDS, RevocationList
from server.storage.tables import TenantRow
from tests.support.clock import TestClock
from tests.unit.identity.proofs import client_key, make_proof

TOKEN = "/oauth/token"
INTROSPECT = "/oauth/introspect"
REVOKE = "/oauth/revoke"
ORCHESTRATOR = str(Path(sys.executable).with_name("orchestrator"))
BASIC = 'Basic realm="orchestrator", charset="UTF-8"'
_SERVING = re.compile(r"serving gRPC on 127\.0\.0\.1:(\d+), HTTP on 127\.0\.0\.1:(\d+)")
ALL_SCOPES = ["orch:read", "orch:quota", "orch:operate", "orch:backfill", "orch:admin"]


async def _tenant(app: Application, tenant: str) -> str:
    async with app.db.transaction() as session:
        if await session.get(TenantRow, tenant) is None:
            session.add(TenantRow(tenant_id=tenant, display_name=tenant))
    return tenant


async def _client(
    app: Application, tenant: str | None, scopes: list[str], **kwargs: Any
) -> CreatedClient:
    if tenant is not None:
        await _tenant(app, tenant)
    return await clients.create_client(app.db, scopes=scopes, tenant=tenant, **kwargs)


def _form(created: CreatedClient, **extra: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_id": created.client.client_id,
        "client_secret": created.client_secret,
        **extra,
    }


def _basic(created: CreatedClient) -> tuple[str, str]:
    return created.client.client_id, created.client_secret


def _part(token: str, index: int) -> dict[str, Any]:
    segment = token.split(".")[index]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    )
    return decoded


async def _token(http: httpx.AsyncClient, created: CreatedClient, **extra: str) -> str:
    response = await http.post(TOKEN, data=_form(created, **extra))
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def _oauth_error(response: httpx.Response, status: int, error: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"error", "error_description"}
    assert body["error"] == error
    description: str = body["error_description"]
    return description


# --- token endpoint --------------------------------------------------------------------


async def test_token_over_form_body_exact_response_and_rfc9068_claims(
    app: Application, http: httpx.AsyncClient, tenant: str
) -> None:
    created = await _client(
        app, tenant, ["orch:read", "orch:operate"], permissions=["access orchestra api"]
    )
    response = await http.post(TOKEN, data=_form(created))
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["access_token", "token_type", "expires_in", "scope"]
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == "orch:read orch:operate"

    token = body["access_token"]
    header, claims = _part(token, 0), _part(token, 1)
    jwks = (await http.get("/.well-known/jwks.json")).json()
    assert header == {"typ": "at+jwt", "alg": "ES256", "kid": jwks["keys"][0]["kid"]}
    issuer = app.settings.public_url
    client_id = created.client.client_id
    assert claims["exp"] - claims["iat"] == 3600
    assert abs(claims["iat"] - time.time()) < 30
    assert len(claims.pop("jti")) >= 16
    del claims["exp"], claims["iat"]
    assert claims == {
        "iss": issuer,
        "aud": issuer,
        "sub": client_id,
        "client_id": client_id,
        "scope": "orch:read orch:operate",
        "tenant": tenant,
        "permissions": ["access orchestra api"],
    }
    principal = await app.identity.verifier.verify(
        f"Bearer {token}", None, http_method="GET", http_url=f"{issuer}/jobengine/sources"
    )
    assert (principal.client_id, principal.tenant) == (client_id, tenant)


async def test_token_with_http_basic_and_scope_selection(
    app: Application, http: httpx.AsyncClient, tenant: str
) -> None:
    created = await _client(app, tenant, ["orch:read", "orch:operate"])
    response = await http.post(
        TOKEN, data={"grant_type": "client_credentials", "scope": "orch:read"}, auth=_basic(created)
    )
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "orch:read"
    assert _part(response.json()["access_token"], 1)["scope"] == "orch:read"


async def test_orchestra_consumer_gets_exactly_the_three_fields(
    app: Application, http: httpx.AsyncClient, tenant: str
) -> None:
    """Seed 004: a permission-only consumer; `{access_token, expires_in, token_type}`."""
    created = await _client(app, tenant, [], permissions=["access orchestra api"])
    response = await http.post(TOKEN, data=_form(created))
    assert response.status_code == 200
    assert set(response.json()) == {"access_token", "expires_in", "token_type"}


async def test_unknown_form_parameters_are_ignored(
    app: Application, http: httpx.AsyncClient, tenant: str
) -> None:
    created = await _client(app, tenant, ["orch:read"])
    response = await http.post(TOKEN, data=_form(created, audience="x", resource="y"))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("how", ["form", "basic", "unknown-client", "disabled"])
async def test_bad_client_credentials_are_401_invalid_client_with_challenge(
    app: Application, http: httpx.AsyncClient, tenant: str, how: str
) -> None:
    created = await _client(app, tenant, ["orch:read"])
    form = {"grant_type": "client_credentials"}
    auth: Any = httpx.USE_CLIENT_DEFAULT
    if how == "form":
        form |= {"client_id": created.client.client_id, "client_secret": "wrong"}
    elif how == "basic":
        auth = (created.client.client_id, "wrong")
    elif how == "unknown-client":
        form |= {"client_id": f"nobody-{uuid.uuid4().hex[:8]}", "client_secret": "x"}
    else:
        await clients.disable_client(app.db, client_id=created.client.client_id)
        form = _form(created)
    response = await http.post(TOKEN, data=form, auth=auth)
    description = _oauth_error(response, 401, "invalid_client")
    assert description == "client authentication failed"
    assert response.headers["www-authenticate"] == BASIC


async def test_missing_client_authentication_is_invalid_client(http: httpx.AsyncClient) -> None:
    response = await http.post(TOKEN, data={"grant_type": "client_credentials"})
    assert _oauth_error(response, 401, "invalid_client") == "client authentication is required"
    assert response.headers["www-authenticate"] == BASIC


@pytest.mark.parametrize(
    ("form", "auth", "error", "text"),
    [
        ({"grant_type": "password"}, False, "unsupported_grant_type", "grant_type=password"),
        ({"grant_type": ""}, False, "invalid_request", "grant_type: is required"),
        ({"scope": "orch:read orch:write"}, False, "invalid_scope", "unknown scope: orch:write"),
        ({"scope": "orch:admin"}, False, "invalid_scope", "not granted to this client: orch:admin"),
        ({}, True, "invalid_request", "not both"),
    ],
    ids=["grant", "no-grant", "unknown-scope", "not-granted", "two-methods"],
)
async def test_rfc6749_request_errors_are_400(
    app: Application,
    http: httpx.AsyncClient,
    tenant: str,
    form: dict[str, str],
    auth: bool,
    error: str,
    text: str,
) -> None:
    created = await _client(app, tenant, ["orch:read"])
    response = await http.post(
        TOKEN,
        data=_form(created, **form),
        auth=_basic(created) if auth else httpx.USE_CLIENT_DEFAULT,
    )
    assert text in _oauth_error(response, 400, error)
    assert "www-authenticate" not in response.headers


async def test_repeated_failures_lock_the_client_id_for_a_while(
    app: Application, http: httpx.AsyncClient, tenant: str, clock: TestClock
) -> None:
    created = await _client(app, tenant, ["orch:read"])
    bad = {**_form(created), "client_secret": "wrong"}
    for _ in range(5):
        failed = await http.post(TOKEN, data=bad)
        assert _oauth_error(failed, 401, "invalid_client") == "client authentication failed"
        assert failed.headers["www-authenticate"] == BASIC
    locked = await http.post(TOKEN, data=_form(created))  # even the right secret
    assert _oauth_error(locked, 401, "invalid_client") == (
        "too many failed authentications; retry in 1 s"  # 5 free failures, then 1 s
    )
    assert locked.headers["www-authenticate"] == BASIC
    clock.advance(1.0)
    unlocked = await http.post(TOKEN, data=_form(created))
    assert unlocked.status_code == 200, unlocked.text
    body = unlocked.json()
    assert (body["token_type"], body["expires_in"], body["scope"]) == ("Bearer", 3600, "orch:read")


# --- seed 003: reasons and tickets -------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "prefix"), [("orch:quota", "quota"), ("orch:backfill", "backfill")]
)
async def test_justified_scopes_need_a_reason_which_becomes_a_claim(
    app: Application, http: httpx.AsyncClient, tenant: str, scope: str, prefix: str
) -> None:
    created = await _client(app, tenant, ALL_SCOPES)
    missing = await http.post(TOKEN, data=_form(created, scope=f"orch:read {scope}"))
    assert _oauth_error(missing, 400, "invalid_request") == (
        f"{prefix}_reason: is required when requesting {scope}"
    )
    blank = await http.post(TOKEN, data=_form(created, scope=scope, **{f"{prefix}_reason": " "}))
    assert blank.status_code == 400
    too_long = await http.post(
        TOKEN, data=_form(created, scope=scope, **{f"{prefix}_reason": "r" * 257})
    )
    assert f"{prefix}_reason: must be at most 256" in _oauth_error(too_long, 400, "invalid_request")
    long_ticket = await http.post(
        TOKEN,
        data=_form(
            created, scope=scope, **{f"{prefix}_reason": "ok", f"{prefix}_ticket": "t" * 129}
        ),
    )
    assert f"{prefix}_ticket: must be at most 128" in _oauth_error(
        long_ticket, 400, "invalid_request"
    )
    reason = "r" * 256
    token = await _token(
        http, created, scope=scope, **{f"{prefix}_reason": reason, f"{prefix}_ticket": "CHG-42"}
    )
    claims = _part(token, 1)
    assert claims[f"{prefix}_reason"] == reason
    assert claims[f"{prefix}_ticket"] == "CHG-42"
    principal = await app.identity.verifier.verify(
        f"Bearer {token}", None, http_method="GET", http_url=app.settings.public_url + "/x"
    )
    assert getattr(principal.claims, f"{prefix}_reason") == reason
    introspected = await http.post(INTROSPECT, data={"token": token}, auth=_basic(created))
    assert introspected.json()[f"{prefix}_reason"] == reason
    assert introspected.json()[f"{prefix}_ticket"] == "CHG-42"


async def test_default_scope_leaves_out_the_justified_ones(
    app: Application, http: httpx.AsyncClient, tenant: str
) -> None:
    created = await _client(app, tenant, ALL_SCOPES)
    response = await http.post(TOKEN, data=_form(created, quota_reason="ignored without scope"))
    assert response.status_code == 200
    assert response.json()["scope"] == "orch:read orch:operate orch:admin"
    assert "quota_reason" not in _part(response.json()["access_token"], 1)


async def test_operator_client_token_carries_its_tenants(
    app: Application, http: httpx.AsyncClient, tenant: str
) -> None:
    other = await _tenant(app, f"{tenant}-b")
    await _tenant(app, tenant)
    created = await _client(app, None, ["orch:read"], tenants=[tenant, other])
    token = await _token(http, created)
    claims = _part(token, 1)
    assert "tenant" not in claims
    assert claims["tenants"] == [tenant, other]
    introspected = await http.post(INTROSPECT, data={"token": token}, auth=_basic(created))
    body = introspected.json()
    assert (body["tenants"], body["permissions"]) == ([tenant, other], [])
    assert "tenant" not in body


# --- DPoP ------------------------------------------------------------------------------


async def test_dpop_token_request_binds_the_key(
    app: Application, http: httpx.AsyncClient, tenant: str
) -> None:
    created = await _client(app, tenant, ["orch:read"])
    key = client_key()
    htu = app.identity.urls.endpoint(TOKEN)
    response = await http.post(
        TOKEN, data=_form(created), headers={"DPoP": make_proof(key, htu=htu)}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "DPoP"
    token = body["access_token"]
    assert _part(token, 1)["cnf"] == {"jkt": key.thumbprint()}

    url = app.settings.public_url + "/jobengine/sources"
    proof = make_proof(key, htm="GET", htu=url, access_token=token)
    principal = await app.identity.verifier.verify(
        f"DPoP {token}", proof, http_method="GET", http_url=url
    )
    assert principal.dpop_bound
    with pytest.raises(TokenRejected, match="DPoP scheme"):
        await app.identity.verifier.verify(f"Bearer {token}", None, http_method="GET", http_url=url)

    introspected = await http.post(INTROSPECT, data={"token": token}, auth=_basic(created))
    assert introspected.json()["token_type"] == "DPoP"
    assert introspected.json()["cnf"] == {"jkt": key.thumbprint()}


@pytest.mark.parametrize("problem", ["wrong-htu", "wrong-htm", "replay", "two-headers"])
async def test_bad_dpop_proof_is_invalid_dpop_proof(
    app: Application, http: httpx.AsyncClient, tenant: str, problem: str
) -> None:
    created = await _client(app, tenant, ["orch:read"])
    key = client_key()
    htu = app.identity.urls.endpoint(TOKEN)
    proof = make_proof(key, htu=htu)
    headers: list[tuple[str, str]] = [("DPoP", proof)]
    if problem == "wrong-htu":
        headers = [("DPoP", make_proof(key, htu=app.identity.urls.endpoint(REVOKE)))]
    elif problem == "wrong-htm":
        headers = [("DPoP", make_proof(key, htm="GET", htu=htu))]
    elif problem == "replay":
        assert (await http.post(TOKEN, data=_form(created), headers=headers)).status_code == 200
    else:
        headers.append(("DPoP", make_proof(key, htu=htu)))
    response = await http.post(TOKEN, data=_form(created), headers=headers)
    _oauth_error(response, 400, "invalid_dpop_proof")


async def test_client_requiring_dpop_refuses_plain_requests(
    app: Application, http: httpx.AsyncClient, tenant: str
) -> None:
    created = await _client(app, tenant, ["orch:read"], require_dpop=True)
    refused = await http.post(TOKEN, data=_form(created))
    assert _oauth_error(refused, 400, "invalid_request") == (
        "DPoP: a DPoP proof is required for this client"
    )
    proof = make_proof(client_key(), htu=app.identity.urls.endpoint(TOKEN))
    accepted = await http.post(TOKEN, data=_form(created), headers={"DPoP": proof})
    assert accepted.status_code == 200 and accepted.json()["token_type"] == "DPoP"


# --- introspection and revocation ------------------------------------------------------------


async def test_introspection_of_an_active_token(
    app: Application, http: httpx.AsyncClient, tenant: str
) -> None:
    created = await _client(app, tenant, ["orch:read"], permissions=["access orchestra api"])
    token = await _token(http, created)
    claims = _part(token, 1)
    response = await http.post(INTROSPECT, data={"token": token}, auth=_basic(created))
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == {
        "active": True,
        "scope": "orch:read",
        "client_id": created.client.client_id,
        "token_type": "Bearer",
        "exp": claims["exp"],
        "iat": claims["iat"],
        "sub": created.client.client_id,
        "aud": app.settings.public_url,
        "iss": app.settings.public_url,
        "jti": claims["jti"],
        "tenant": tenant,
        "permissions": ["access orchestra api"],
    }
    by_form = await http.post(
        INTROSPECT,
        data={
            "token": token,
            "token_type_hint": "access_token",
            "client_id": created.client.client_id,
            "client_secret": created.client_secret,
        },
    )
    assert by_form.json()["active"] is True


async def test_introspection_inactive_is_exactly_active_false(
    app: Application, http: httpx.AsyncClient, tenant: str
) -> None:
    mine = await _client(app, tenant, ["orch:read"])
    theirs = await _client(app, tenant, ["orch:read"])
    admin = await _client(app, tenant, ["orch:admin"])
    their_token = await _token(http, theirs)
    for token in ("garbage", "a.b.c", their_token):
        response = await http.post(INTROSPECT, data={"token": token}, auth=_basic(mine))
        assert response.status_code == 200
        assert response.content == b'{"active":false}'
    as_admin = await http.post(INTROSPECT, data={"token": their_token}, auth=_basic(admin))
    assert as_admin.json()["active"] is True


async def test_introspection_needs_client_authentication_and_a_token(
    app: Application, http: httpx.AsyncClient, tenant: str
) -> None:
    created = await _client(app, tenant, ["orch:read"])
    anonymous = await http.post(INTROSPECT, data={"token": "x"})
    _oauth_error(anonymous, 401, "invalid_client")
    assert anonymous.headers["www-authenticate"] == BASIC
    no_token = await http.post(INTROSPECT, data={}, auth=_basic(created))
    assert _oauth_error(no_token, 400, "invalid_request") == "token: is required"
    # token_type_hint is advisory (RFC 7662 §2.1): an unknown one is ignored, not refused.
    unknown_hint = await http.post(
        INTROSPECT, data={"token": "x", "token_type_hint": "id_token"}, auth=_basic(created)
    )
    assert (unknown_hint.status_code, unknown_hint.content) == (200, b'{"active":false}')


async def test_revocation_is_seen_everywhere_within_a_second(
    app: Application, http: httpx.AsyncClient, tenant: str
) -> None:
    created = await _client(app, tenant, ["orch:read"])
    token = await _token(http, created)
    url = app.settings.public_url + "/jobengine/sources"
    replica_time = [0.0]  # another replica's monotonic clock, moved by hand
    replica = TokenVerifier(
        keys=app.identity.keys,
        revocations=RevocationList(app.db, clock=lambda: replica_time[0]),
        dpop=DpopVerifier(),
        urls=app.identity.urls,
    )
    accepted = await replica.verify(f"Bearer {token}", None, http_method="GET", http_url=url)
    assert accepted.client_id == created.client.client_id

    response = await http.post(REVOKE, data={"token": token}, auth=_basic(created))
    assert response.status_code == 200
    assert response.content == b"{}"
    assert response.headers["cache-control"] == "no-store"
    with pytest.raises(TokenRejected) as here:  # this process: at once
        await app.identity.verifier.verify(f"Bearer {token}", None, http_method="GET", http_url=url)
    assert here.value.description == "the access token was revoked"
    # Another replica: its list is fresh for MAX_AGE_SECONDS, then reloaded by the next check.
    replica_time[0] += MAX_AGE_SECONDS - 0.01
    still = await replica.verify(f"Bearer {token}", None, http_method="GET", http_url=url)
    assert still.jti == accepted.jti
    replica_time[0] += 0.01
    with pytest.raises(TokenRejected) as there:
        await replica.verify(f"Bearer {token}", None, http_method="GET", http_url=url)
    assert (there.value.error, there.value.description) == (
        "invalid_token",
        "the access token was revoked",
    )
    introspected = await http.post(INTROSPECT, data={"token": token}, auth=_basic(created))
    assert introspected.json() == {"active": False}
    again = await http.post(REVOKE, data={"token": token}, auth=_basic(created))
    assert (again.status_code, again.content) == (200, b"{}")


async def test_revoking_unknown_tokens_is_ok_but_not_other_clients_tokens(
    app: Application, http: httpx.AsyncClient, tenant: str
) -> None:
    mine = await _client(app, tenant, ["orch:read"])
    theirs = await _client(app, tenant, ["orch:read"])
    unknown = await http.post(REVOKE, data={"token": "not-a-token"}, auth=_basic(mine))
    assert (unknown.status_code, unknown.content) == (200, b"{}")
    their_token = await _token(http, theirs)
    refused = await http.post(REVOKE, data={"token": their_token}, auth=_basic(mine))
    _oauth_error(refused, 400, "invalid_grant")
    anonymous = await http.post(REVOKE, data={"token": their_token})
    _oauth_error(anonymous, 401, "invalid_client")


# --- discovery ----------------------------------------------------------------------


async def test_jwks_publishes_current_and_previous_public_keys(
    app: Application, http: httpx.AsyncClient
) -> None:
    response = await http.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=60"
    assert response.headers["etag"]
    keys = response.json()["keys"]
    assert 1 <= len(keys) <= 2
    for key in keys:
        assert set(key) == {"kty", "crv", "x", "y", "kid", "alg", "use"}
        assert (key["kty"], key["crv"], key["alg"], key["use"]) == ("EC", "P-256", "ES256", "sig")


async def test_authorization_server_metadata(app: Application, http: httpx.AsyncClient) -> None:
    response = await http.get("/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=300"
    base = app.settings.public_url
    methods = ["client_secret_basic", "client_secret_post"]
    assert response.json() == {
        "issuer": base,
        "token_endpoint": f"{base}/oauth/token",
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "introspection_endpoint": f"{base}/oauth/introspect",
        "revocation_endpoint": f"{base}/oauth/revoke",
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": methods,
        "introspection_endpoint_auth_methods_supported": methods,
        "revocation_endpoint_auth_methods_supported": methods,
        "scopes_supported": ALL_SCOPES,
        "response_types_supported": [],
        "dpop_signing_alg_values_supported": ["ES256", "ES384", "ES512", "EdDSA", "PS256", "RS256"],
    }


# --- gRPC -------------------------------------------------------------------------------


async def test_token_over_grpc_with_basic_metadata(
    app: Application, grpc_target: str, tenant: str
) -> None:
    created = await _client(app, tenant, ["orch:read"])
    basic = base64.b64encode(f"{created.client.client_id}:{created.client_secret}".encode())
    async with grpc.aio.insecure_channel(grpc_target) as channel:
        stub = oauth_service_pb2_grpc.OAuthServiceStub(channel)
        response = await stub.Token(
            oauth_pb2.TokenRequest(grant_type="client_credentials"),
            metadata=(("authorization", f"Basic {basic.decode()}"),),
        )
        assert (response.token_type, response.expires_in, response.scope) == (
            "Bearer",
            3600,
            "orch:read",
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Token(
                oauth_pb2.TokenRequest(
                    grant_type="client_credentials",
                    client_id=created.client.client_id,
                    client_secret="wrong",
                )
            )
    error = caught.value
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    trailers = dict(error.trailing_metadata() or ())
    assert trailers["www-authenticate"] == BASIC
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert info.reason == "invalid_client"


# --- command line ------------------------------------------------------------------------


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "ORCHESTRATOR_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'var' / 'o.db'}",
        "PORT": "0",
        "GRPC_PORT": "0",
        "ORCHESTRATOR_CONFIG_FILE": os.devnull,  # no config file: an empty one
    }


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ORCHESTRATOR, *args],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_clients_and_keys_commands(tmp_path: Path) -> None:
    assert _cli(tmp_path, "tenants", "create", "acme").returncode == 0
    created = _cli(
        tmp_path,
        "clients", "create", "--tenant", "acme", "--scope", "orch:read", "--scope", "orch:quota",
        "--permission", "access orchestra api", "--name", "Remote", "--json",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    credentials = json.loads(created.stdout)
    assert set(credentials) == {"client_id", "client_secret"}
    client_id = credentials["client_id"]

    listed = _cli(tmp_path, "clients", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert credentials["client_secret"] not in listed.stdout
    assert json.loads(listed.stdout) == [
        {
            "client_id": client_id,
            "display_name": "Remote",
            "tenant": "acme",
            "tenants": [],
            "scopes": ["orch:read", "orch:quota"],
            "permissions": ["access orchestra api"],
            "require_dpop": False,
            "disabled": False,
        }
    ]
    rotated = _cli(tmp_path, "clients", "rotate-secret", client_id, "--json")
    assert rotated.returncode == 0, rotated.stderr
    assert json.loads(rotated.stdout)["client_secret"] != credentials["client_secret"]
    disabled = _cli(tmp_path, "clients", "disable", client_id)
    assert json.loads(disabled.stdout) == {"client_id": client_id, "disabled": True}
    first, second = _cli(tmp_path, "keys", "rotate"), _cli(tmp_path, "keys", "rotate")
    assert json.loads(first.stdout)["kid"] != json.loads(second.stdout)["kid"]

    operator = _cli(tmp_path, "clients", "create", "--tenants", "acme", "--scope", "orch:admin")
    assert operator.returncode == 0, operator.stderr
    assert "client_secret: " in operator.stdout and "(shown once)" in operator.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("clients", "create", "--tenant", "acme", "--scope", "orch:write"), "'orch:write'"),
        (("clients", "create", "--tenant", "nowhere", "--scope", "orch:read"), "nowhere"),
        (("clients", "rotate-secret", "nobody"), "not found"),
        (("clients", "disable", "nobody"), "not found"),
    ],
    ids=["unknown-scope", "unknown-tenant", "rotate-unknown", "disable-unknown"],
)
def test_client_command_errors_exit_1_naming_the_problem(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    done = _cli(tmp_path, *args)
    assert done.returncode == 1
    assert message in done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture
def dev_server(tmp_path: Path) -> Iterator[tuple[int, dict[str, str], Path]]:
    proc = subprocess.Popen(
        [ORCHESTRATOR, "serve", "--dev"],
        cwd=tmp_path,
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    port: int | None = None
    found: dict[str, str] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not ("client_secret" in found and port):
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if match := _SERVING.search(line):
            port = int(match.group(2))
        for name in ("client_id", "client_secret"):
            stripped = line.strip()
            if stripped.startswith(f"{name}="):
                found[name] = stripped.split("=", 1)[1]
    assert port is not None and "client_secret" in found, "".join(lines)
    try:
        yield port, found, tmp_path
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        proc.stdout.close()


def test_serve_dev_prints_working_demo_credentials(
    dev_server: tuple[int, dict[str, str], Path],
) -> None:
    port, credentials, tmp_path = dev_server
    base = f"http://127.0.0.1:{port}"
    response = httpx.post(
        f"{base}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(credentials["client_id"], credentials["client_secret"]),
    )
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "orch:read orch:operate orch:admin"
    claims = _part(response.json()["access_token"], 1)
    assert claims["tenant"] == "demo"
    assert claims["permissions"] == ["access orchestra api"]

    # The CLI and the running server share the database: a client the CLI disables
    # is refused by the server at once.
    _cli(tmp_path, "clients", "disable", credentials["client_id"])
    refused = httpx.post(
        f"{base}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(credentials["client_id"], credentials["client_secret"]),
    )
    assert refused.status_code == 401


@pytest.mark.parametrize("path", [TOKEN, INTROSPECT, REVOKE])
@pytest.mark.parametrize("how", ["form", "basic"])
async def test_a_client_id_with_a_control_character_is_invalid_client(
    http: httpx.AsyncClient, path: str, how: str
) -> None:
    """A NUL in the client id reached PostgreSQL (the failure throttle's lookup), which
    refuses it in text: 500 server_error. No client has one (RFC 6749 §A.1: VSCHAR), so
    it is 401 invalid_client, as for an unknown client, before any lookup."""
    form = {"grant_type": "client_credentials", "token": "x"}
    auth: Any = httpx.USE_CLIENT_DEFAULT
    if how == "form":
        form |= {"client_id": "demo\x00client", "client_secret": "x"}
    else:
        auth = ("demo\x00client", "x")
    for _ in range(7):  # more than the throttle's free failures: none was counted
        response = await http.post(path, data=form, auth=auth)
        assert _oauth_error(response, 401, "invalid_client") == "client authentication failed"
        assert response.headers["www-authenticate"] == BASIC

"""Advisory parameters are not closed enums (issue 8, item 1).

An input the RFCs call a hint or leave open to values we do not know must not
refuse the request: `token_type_hint` at introspection (RFC 7662 §2.1) and
revocation (RFC 7009 §2.1), unknown request parameters at the token, introspection
and revocation endpoints (RFC 6749 §3.1, §3.2: "MUST ignore unrecognized request
parameters"), unknown claims of a DPoP proof (RFC 9449 §4.2), header parameters a
JWS reader does not understand (RFC 7515 §4) and the advisory members of the proof's
JWK (`use`, `key_ops`, `alg`, `kid`, and WebCrypto's `ext`; RFC 7517 §4.2-4.5).
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any

import grpc
import httpx
import pytest
from joserfc import jws
from joserfc.jws import JWSRegistry
from joserfc.registry import HeaderParameter

from orchestrator.identity.v1 import oauth_pb2, oauth_service_pb2_grpc
from server.app import Application
from server.identity.authorization_server.clients import CreatedClient
from tests.support.auth import TokenFactory, token_form
from tests.unit.identity.proofs import client_key, make_proof

TOKEN = "/oauth/token"
INTROSPECT = "/oauth/introspect"
REVOKE = "/oauth/revoke"
# Registered values, values from other specs, and made-up ones: all only hints.
HINTS = ["access_token", "refresh_token", "id_token", "foo", "ACCESS_TOKEN", "urn:x:jwt"]


def _basic(created: CreatedClient) -> tuple[str, str]:
    return created.client.client_id, created.client_secret


def _claims(token: str) -> dict[str, Any]:
    segment = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    )
    return claims


async def _token(tokens: TokenFactory, tenant: str) -> tuple[CreatedClient, str]:
    created = await tokens.client(tenant, ("orch:read",))
    return created, await tokens.issue(created)


@pytest.mark.parametrize("hint", HINTS)
async def test_revocation_ignores_the_token_type_hint(
    http: httpx.AsyncClient, tokens: TokenFactory, tenant: str, hint: str
) -> None:
    created, token = await _token(tokens, tenant)
    revoked = await http.post(
        REVOKE, data={"token": token, "token_type_hint": hint}, auth=_basic(created)
    )
    assert (revoked.status_code, revoked.content) == (200, b"{}")
    after = await http.post(INTROSPECT, data={"token": token}, auth=_basic(created))
    assert (after.status_code, after.content) == (200, b'{"active":false}')


@pytest.mark.parametrize("hint", HINTS)
async def test_introspection_ignores_the_token_type_hint(
    http: httpx.AsyncClient, tokens: TokenFactory, tenant: str, hint: str
) -> None:
    created, token = await _token(tokens, tenant)
    plain = await http.post(INTROSPECT, data={"token": token}, auth=_basic(created))
    hinted = await http.post(
        INTROSPECT, data={"token": token, "token_type_hint": hint}, auth=_basic(created)
    )
    assert plain.status_code == hinted.status_code == 200
    assert hinted.json() == plain.json()
    assert hinted.json()["active"] is True
    assert hinted.json()["jti"] == _claims(token)["jti"]


async def test_hints_are_ignored_over_grpc_too(
    grpc_target: str, tokens: TokenFactory, tenant: str
) -> None:
    created, token = await _token(tokens, tenant)
    basic = base64.b64encode(f"{created.client.client_id}:{created.client_secret}".encode())
    metadata = (("authorization", f"Basic {basic.decode()}"),)
    async with grpc.aio.insecure_channel(grpc_target) as channel:
        stub = oauth_service_pb2_grpc.OAuthServiceStub(channel)
        active = await stub.Introspect(
            oauth_pb2.IntrospectRequest(token=token, token_type_hint="foo"), metadata=metadata
        )
        assert (active.active, active.jti) == (True, _claims(token)["jti"])
        revoked = await stub.Revoke(
            oauth_pb2.RevokeRequest(token=token, token_type_hint="foo"), metadata=metadata
        )
        assert revoked == oauth_pb2.RevokeResponse()
        inactive = await stub.Introspect(
            oauth_pb2.IntrospectRequest(token=token, token_type_hint="bar"), metadata=metadata
        )
        assert inactive == oauth_pb2.IntrospectResponse(active=False)


async def test_unknown_parameters_are_ignored_at_introspection_and_revocation(
    http: httpx.AsyncClient, tokens: TokenFactory, tenant: str
) -> None:
    created, token = await _token(tokens, tenant)
    extra = {"resource": "https://elsewhere.example", "foo": "bar"}
    introspected = await http.post(INTROSPECT, data={"token": token, **extra}, auth=_basic(created))
    assert (introspected.status_code, introspected.json()["active"]) == (200, True)
    revoked = await http.post(
        REVOKE, data={"token": token, **extra}, params={"x": "1"}, auth=_basic(created)
    )
    assert (revoked.status_code, revoked.content) == (200, b"{}")


async def _dpop_token(
    app: Application, http: httpx.AsyncClient, tokens: TokenFactory, tenant: str, proof: str
) -> httpx.Response:
    created = await tokens.client(tenant, ("orch:read",))
    return await http.post(TOKEN, data=token_form(created), headers={"DPoP": proof})


async def test_unknown_proof_claims_and_header_parameters_are_ignored(
    app: Application, http: httpx.AsyncClient, tokens: TokenFactory, tenant: str
) -> None:
    """RFC 9449 §4.2: a proof "MAY contain other" claims; RFC 7515 §4: a header
    parameter the reader does not understand is ignored unless `crit` names it."""
    key = client_key()
    proof = make_proof(
        key,
        htu=app.identity.urls.endpoint(TOKEN),
        header={"kid": "client-key-1", "x-client": "demo/1.0"},
        nonce_hint="x",
        client_version=3,
    )
    response = await _dpop_token(app, http, tokens, tenant, proof)
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "DPoP"
    assert _claims(response.json()["access_token"])["cnf"] == {"jkt": key.thumbprint()}


async def test_a_critical_header_parameter_we_do_not_understand_is_refused(
    app: Application, http: httpx.AsyncClient, tokens: TokenFactory, tenant: str
) -> None:
    """The one exception (RFC 7515 §4.1.11): listed in `crit`, it must be understood."""
    key = client_key()
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.as_dict(private=False)}
    header.update({"x-client": "demo/1.0", "crit": ["x-client"]})
    claims = {"htm": "POST", "htu": app.identity.urls.endpoint(TOKEN), "iat": int(time.time())}
    claims["jti"] = secrets.token_urlsafe(12)
    # A client that understands x-client signs it; joserfc must be told it exists.
    client_registry = JWSRegistry(header_registry={"x-client": HeaderParameter("x", "str")})
    proof = jws.serialize_compact(header, json.dumps(claims), key, registry=client_registry)
    response = await _dpop_token(app, http, tokens, tenant, proof)
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_dpop_proof",
        "error_description": "proof is not a well-formed JWS",
    }


@pytest.mark.parametrize(
    "members",
    [
        {"use": "sig", "alg": "ES256", "kid": "k1"},
        {"ext": True, "key_ops": ["verify"]},  # what WebCrypto's exportKey("jwk") adds
        {"key_ops": ["verify", "x-attest"]},  # "other values MAY be used" (RFC 7517 §4.3)
        {"use": "x-other"},  # likewise (RFC 7517 §4.2)
    ],
    ids=["use-alg-kid", "webcrypto-export", "unknown-key-op", "unknown-use"],
)
async def test_advisory_jwk_members_are_ignored(
    app: Application,
    http: httpx.AsyncClient,
    tokens: TokenFactory,
    tenant: str,
    members: dict[str, Any],
) -> None:
    key = client_key()
    jwk = {**key.as_dict(private=False), **members}
    proof = make_proof(key, htu=app.identity.urls.endpoint(TOKEN), jwk=jwk)
    response = await _dpop_token(app, http, tokens, tenant, proof)
    assert response.status_code == 200, response.text
    assert _claims(response.json()["access_token"])["cnf"] == {"jkt": key.thumbprint()}

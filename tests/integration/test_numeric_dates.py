"""NumericDate claims with fractions, against the running server (RFC 7519 §2).

A DPoP proof whose `iat` has a fractional part was refused at the token endpoint and
the resource server; an access token's `exp`, `nbf` and `iat` may have one too
(tokens here are the server's own, re-signed with its current key after a claim is
changed). A neighbour: a revocation was kept until the token's `exp` in whole
seconds while the token verifies until `exp` + the leeway, so a revoked token
verified again once its `exp` had passed.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import grpc
import httpx
from joserfc import jwt

from orchestrator.jobengine.v1 import sources_service_pb2 as pb
from server.app import Application
from server.identity.revocation import MAX_AGE_SECONDS
from tests.support.auth import TokenFactory, token_form
from tests.support.clock import TestClock
from tests.unit.identity.proofs import client_key, make_proof

TOKEN = "/oauth/token"
REVOKE = "/oauth/revoke"
SOURCES = "/jobengine/sources"
LIST = "/orchestrator.jobengine.v1.SourcesService/ListSources"


def claims_of(token: str) -> dict[str, Any]:
    segment = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    )
    return decoded


async def resigned(app: Application, token: str, **changes: Any) -> str:
    """`token` with `changes` to its claims, signed with the server's current key."""
    key = await app.identity.keys.signing_key()
    header = {"alg": "ES256", "typ": "at+jwt", "kid": key.kid}
    return jwt.encode(header, {**claims_of(token), **changes}, key)


async def test_a_proof_iat_with_a_fraction_works_at_token_endpoint_and_resource_server(
    app: Application, http: httpx.AsyncClient, grpc_target: str, tokens: TokenFactory, tenant: str
) -> None:
    key = client_key()
    created = await tokens.client(tenant, ("orch:read",))
    proof = make_proof(key, htu=app.identity.urls.endpoint(TOKEN), iat=time.time() - 0.5)
    issued = await http.post(
        TOKEN, data=token_form(created, scope="orch:read"), headers={"DPoP": proof}
    )
    assert issued.status_code == 200, issued.text
    token = issued.json()["access_token"]

    url = app.settings.public_url + SOURCES
    proof = make_proof(key, htm="GET", htu=url, access_token=token, iat=time.time() - 0.25)
    listed = await http.get(SOURCES, headers={"Authorization": f"DPoP {token}", "DPoP": proof})
    assert (listed.status_code, listed.json()) == (200, {"items": []}), listed.text

    grpc_proof = make_proof(
        key, htu=app.settings.public_url + LIST, access_token=token, iat=time.time() - 0.75
    )
    async with grpc.aio.insecure_channel(grpc_target) as channel:
        call = channel.unary_unary(
            LIST,
            request_serializer=pb.ListSourcesRequest.SerializeToString,
            response_deserializer=pb.ListSourcesResponse.FromString,
        )
        reply = await call(
            pb.ListSourcesRequest(),
            metadata=(("authorization", f"DPoP {token}"), ("dpop", grpc_proof)),
        )
    assert reply == pb.ListSourcesResponse()


async def test_an_access_token_with_fractional_dates_is_served(
    app: Application, http: httpx.AsyncClient, tokens: TokenFactory, tenant: str
) -> None:
    created = await tokens.client(tenant, ("orch:read",))
    issued = claims_of(await tokens.issue(created, scope="orch:read"))
    token = await resigned(
        app,
        await tokens.issue(created, scope="orch:read"),
        iat=issued["iat"] - 0.25,
        nbf=issued["iat"] - 0.5,
        exp=issued["exp"] + 0.75,
    )
    listed = await http.get(SOURCES, headers={"Authorization": f"Bearer {token}"})
    assert (listed.status_code, listed.json()) == (200, {"items": []}), listed.text
    introspected = await http.post(
        "/oauth/introspect", data={"token": token, **_credentials(created)}
    )
    assert introspected.json()["active"] is True


def _credentials(created: Any) -> dict[str, str]:
    return {"client_id": created.client.client_id, "client_secret": created.client_secret}


async def test_a_revoked_token_stays_refused_while_it_would_verify(
    app: Application,
    http: httpx.AsyncClient,
    tokens: TokenFactory,
    tenant: str,
    clock: TestClock,
) -> None:
    """A token a second and a half past its `exp` still verifies (the leeway); revoked,
    it stays refused after every replica reloads its list from the database, which
    compares the record's end with the present. `exp` is read off the server's clock,
    which earlier tests of the session may have moved forward."""
    created = await tokens.client(tenant, ("orch:read",))
    token = await resigned(
        app, await tokens.issue(created, scope="orch:read"), exp=clock.wall() - 1.5
    )
    headers = {"Authorization": f"Bearer {token}"}
    served = await http.get(SOURCES, headers=headers)
    assert served.status_code == 200, served.text  # inside the leeway

    revoked = await http.post(REVOKE, data={"token": token, **_credentials(created)})
    assert (revoked.status_code, revoked.content) == (200, b"{}")
    clock.advance(MAX_AGE_SECONDS + 0.01)  # stale: the next check reloads the list
    refused = await http.get(SOURCES, headers=headers)
    assert refused.status_code == 401
    assert (
        'error_description="the access token was revoked"' in (refused.headers["www-authenticate"])
    )

"""Every DPoP algorithm the server advertises works, end to end (issue 8, item 2).

Kind: a library's default limit silently breaking an advertised feature. joserfc
refuses a JWS header over 512 bytes, and an RSA-2048 `jwk` in a proof's header makes
it ~570: RS256 and PS256 were advertised and could never work. So one test per
advertised algorithm (and per key size or curve it admits), generated from
`dpop_signing_alg_values_supported` as discovery serves it, gets a DPoP-bound token
from the token endpoint and calls the resource server over REST and gRPC with it.
`test_the_parametrization_is_what_the_server_advertises` holds the parameters to
what the running server publishes (metadata and `WWW-Authenticate` `algs`), and an
advertised algorithm without a key recipe here is a failing case, not a gap.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import grpc
import httpx
import pytest
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey

from orchestrator.jobengine.v1 import sources_service_pb2 as pb
from server.app import Application
from server.identity.authorization_server.discovery import server_metadata
from server.identity.urls import PublicUrls
from tests.support.auth import TokenFactory, token_form
from tests.unit.identity.proofs import make_proof

TOKEN = "/oauth/token"
METADATA = "/.well-known/oauth-authorization-server"
LIST = "/orchestrator.jobengine.v1.SourcesService/ListSources"
ADVERTISED: list[str] = server_metadata(PublicUrls.from_setting("https://any.example"))[
    "dpop_signing_alg_values_supported"
]

# The keys a client may use with each algorithm (RFC 7518 §3.3-3.5, RFC 8037 §3.1).
KEYS: dict[str, dict[str, Callable[[], Key]]] = {
    "ES256": {"P-256": lambda: ECKey.generate_key("P-256")},
    "ES384": {"P-384": lambda: ECKey.generate_key("P-384")},
    "ES512": {"P-521": lambda: ECKey.generate_key("P-521")},
    "EdDSA": {
        "Ed25519": lambda: OKPKey.generate_key("Ed25519"),
        "Ed448": lambda: OKPKey.generate_key("Ed448"),
    },
    "PS256": {
        "RSA-2048": lambda: RSAKey.generate_key(2048),
        "RSA-4096": lambda: RSAKey.generate_key(4096),
    },
    "RS256": {
        "RSA-2048": lambda: RSAKey.generate_key(2048),
        "RSA-4096": lambda: RSAKey.generate_key(4096),
    },
}


def _cases() -> list[Any]:
    cases = []
    for alg in ADVERTISED:
        for key_name in KEYS.get(alg, {"no key recipe": lambda: ECKey.generate_key("P-256")}):
            cases.append(pytest.param(alg, key_name, id=f"{alg}-{key_name}"))
    return cases


def _claims(token: str) -> dict[str, Any]:
    segment = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    )
    return decoded


async def test_the_parametrization_is_what_the_server_advertises(
    app: Application, http: httpx.AsyncClient, tenant: str
) -> None:
    metadata = (await http.get(METADATA)).json()
    assert metadata["dpop_signing_alg_values_supported"] == ADVERTISED
    refused = await http.get("/jobengine/sources", headers={"X-Stella-Tenant": tenant})
    assert refused.status_code == 401
    dpop_challenge = refused.headers["www-authenticate"].split("DPoP ", 1)[1]
    assert f'algs="{" ".join(ADVERTISED)}"' in dpop_challenge
    assert sorted(KEYS) == sorted(ADVERTISED), "every advertised alg needs a key recipe"


@pytest.mark.parametrize(("alg", "key_name"), _cases())
async def test_an_advertised_algorithm_works_at_token_endpoint_and_resource_server(
    app: Application,
    http: httpx.AsyncClient,
    grpc_target: str,
    tokens: TokenFactory,
    tenant: str,
    alg: str,
    key_name: str,
) -> None:
    assert alg in (await http.get(METADATA)).json()["dpop_signing_alg_values_supported"]
    assert key_name in KEYS.get(alg, {}), f"no key recipe for the advertised alg {alg}"
    key = KEYS[alg][key_name]()
    created = await tokens.client(tenant, ("orch:read",))
    header = {"alg": alg}

    issued = await http.post(
        TOKEN,
        data=token_form(created, scope="orch:read"),
        headers={"DPoP": make_proof(key, htu=app.identity.urls.endpoint(TOKEN), header=header)},
    )
    assert issued.status_code == 200, issued.text
    body = issued.json()
    assert (body["token_type"], body["scope"]) == ("DPoP", "orch:read")
    token = body["access_token"]
    assert _claims(token)["cnf"] == {"jkt": key.thumbprint()}

    url = app.settings.public_url + "/jobengine/sources"
    proof = make_proof(key, htm="GET", htu=url, access_token=token, header=header)
    listed = await http.get(
        "/jobengine/sources", headers={"Authorization": f"DPoP {token}", "DPoP": proof}
    )
    assert (listed.status_code, listed.json()) == (200, {"items": []}), listed.text

    grpc_proof = make_proof(
        key, htm="POST", htu=app.settings.public_url + LIST, access_token=token, header=header
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

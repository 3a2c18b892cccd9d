"""RSA keys under 2048 bits, against the running server (RFC 7518 §3.3, §3.5).

A DPoP proof signed RS256 or PS256 with a 1024-bit key was taken at the token
endpoint and the resource server. Now both refuse it as invalid_dpop_proof and say
the key's size: 400 at the token endpoint (RFC 9449 §5), 401 with the DPoP
challenge at the resource server (RFC 9449 §7.1). The resource case uses a token
bound to that key, re-signed by the server's own key, since the token endpoint no
longer issues one.
"""

from __future__ import annotations

import grpc
import httpx
import pytest

from orchestrator.jobengine.v1 import sources_service_pb2 as pb
from server.app import Application
from tests.integration.test_numeric_dates import resigned
from tests.support.auth import TokenFactory, token_form
from tests.unit.identity.proofs import make_proof
from tests.unit.identity.test_rsa_key_sizes import rsa_key

TOKEN = "/oauth/token"
SOURCES = "/jobengine/sources"
LIST = "/orchestrator.jobengine.v1.SourcesService/ListSources"
TOO_SMALL = (
    "jwk is a 1024-bit RSA key; RSA signatures need at least 2048 bits "
    "(RFC 7518 sections 3.3 and 3.5)"
)


@pytest.mark.parametrize("alg", ["RS256", "PS256"])
async def test_a_small_rsa_key_is_refused_at_token_endpoint_and_resource_server(
    app: Application,
    http: httpx.AsyncClient,
    grpc_target: str,
    tokens: TokenFactory,
    tenant: str,
    alg: str,
) -> None:
    key = rsa_key(1024)
    header = {"alg": alg}
    created = await tokens.client(tenant, ("orch:read",))
    proof = make_proof(key, htu=app.identity.urls.endpoint(TOKEN), header=header)
    refused = await http.post(
        TOKEN, data=token_form(created, scope="orch:read"), headers={"DPoP": proof}
    )
    assert (refused.status_code, refused.json()) == (
        400,
        {"error": "invalid_dpop_proof", "error_description": TOO_SMALL},
    )

    bearer = await tokens.issue(created, scope="orch:read")
    token = await resigned(app, bearer, cnf={"jkt": key.thumbprint()})
    url = app.settings.public_url + SOURCES
    proof = make_proof(key, htm="GET", htu=url, access_token=token, header=header)
    listed = await http.get(SOURCES, headers={"Authorization": f"DPoP {token}", "DPoP": proof})
    assert listed.status_code == 401
    challenge = listed.headers["www-authenticate"]
    assert challenge.startswith('DPoP realm="orchestrator"'), challenge
    assert 'error="invalid_dpop_proof"' in challenge
    assert f'error_description="{TOO_SMALL}"' in challenge

    grpc_proof = make_proof(
        key, htu=app.settings.public_url + LIST, access_token=token, header=header
    )
    async with grpc.aio.insecure_channel(grpc_target) as channel:
        call = channel.unary_unary(
            LIST,
            request_serializer=pb.ListSourcesRequest.SerializeToString,
            response_deserializer=pb.ListSourcesResponse.FromString,
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(
                pb.ListSourcesRequest(),
                metadata=(("authorization", f"DPoP {token}"), ("dpop", grpc_proof)),
            )
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert TOO_SMALL in (caught.value.details() or "")

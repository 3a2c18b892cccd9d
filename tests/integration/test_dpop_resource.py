"""DPoP-bound tokens at the resource server (RFC 9449 §7), over REST and gRPC.

A proof names the HTTP method and URL it was made for: over REST the URL the caller
used (the public base URL + the path, no query), over gRPC `POST` to
`{public URL}/{package.Service}/{Method}`. A proof is good once, for one request.
"""

from __future__ import annotations

import grpc
import httpx
import pytest
from joserfc.jwk import ECKey

from orchestrator.jobengine.v1 import sources_service_pb2 as pb
from server.app import Application
from tests.support.auth import TokenFactory
from tests.unit.identity.proofs import client_key, make_proof

LIST = "/orchestrator.jobengine.v1.SourcesService/ListSources"


async def _dpop_token(app: Application, tokens: TokenFactory, tenant: str) -> tuple[str, ECKey]:
    created = await tokens.client(tenant, ("orch:read",))
    key = client_key()
    proof = make_proof(key, htu=app.identity.urls.endpoint("/oauth/token"))
    async with httpx.AsyncClient(base_url=tokens.http_base) as http:
        response = await http.post(
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": created.client.client_id,
                "client_secret": created.client_secret,
                "scope": "orch:read",
            },
            headers={"DPoP": proof},
        )
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "DPoP"
    token: str = response.json()["access_token"]
    return token, key


def _www_authenticate_error(response: httpx.Response) -> str:
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('DPoP realm="orchestrator"'), challenge
    return challenge.split('error="', 1)[1].split('"', 1)[0]


async def test_rest_call_with_a_proof_for_its_method_and_url(
    app: Application, http: httpx.AsyncClient, tokens: TokenFactory, tenant: str
) -> None:
    token, key = await _dpop_token(app, tokens, tenant)
    url = app.settings.public_url + "/jobengine/sources"
    proof = make_proof(key, htm="GET", htu=url, access_token=token)
    headers = {"Authorization": f"DPoP {token}", "DPoP": proof}
    ok = await http.get("/jobengine/sources?limit=5", headers=headers)
    assert ok.status_code == 200, ok.text
    assert ok.json() == {"items": []}

    replayed = await http.get("/jobengine/sources?limit=5", headers=headers)
    assert replayed.status_code == 401
    assert _www_authenticate_error(replayed) == "invalid_dpop_proof"

    legacy = make_proof(key, htm="GET", htu=url, access_token=token)  # other path
    wrong_path = await http.get(
        "/orchestrator/sources", headers={"Authorization": f"DPoP {token}", "DPoP": legacy}
    )
    assert wrong_path.status_code == 401
    assert _www_authenticate_error(wrong_path) == "invalid_dpop_proof"

    as_post = make_proof(key, htm="POST", htu=url, access_token=token)
    wrong_method = await http.get(
        "/jobengine/sources", headers={"Authorization": f"DPoP {token}", "DPoP": as_post}
    )
    assert wrong_method.status_code == 401


async def test_forged_forwarding_headers_cannot_redirect_a_proof(
    app: Application, http: httpx.AsyncClient, tokens: TokenFactory, tenant: str
) -> None:
    """A proof made for /jobengine/sources does not become good for another path because
    the client claims, in headers, that the request went there."""
    token, key = await _dpop_token(app, tokens, tenant)
    proof = make_proof(
        key, htm="GET", htu=app.settings.public_url + "/jobengine/sources", access_token=token
    )
    forged = await http.get(
        "/orchestrator/sources",
        headers={
            "Authorization": f"DPoP {token}",
            "DPoP": proof,
            "X-Forwarded-Uri": "/jobengine/sources",
            "Grpc-Metadata-X-Forwarded-Uri": "/jobengine/sources",
        },
    )
    assert forged.status_code == 401
    assert _www_authenticate_error(forged) == "invalid_dpop_proof"


@pytest.mark.parametrize("forge", [False, True])
async def test_grpc_call_proves_post_to_the_method_url(
    app: Application, grpc_target: str, tokens: TokenFactory, tenant: str, forge: bool
) -> None:
    token, key = await _dpop_token(app, tokens, tenant)
    async with grpc.aio.insecure_channel(grpc_target) as channel:
        call = channel.unary_unary(
            LIST,
            request_serializer=pb.ListSourcesRequest.SerializeToString,
            response_deserializer=pb.ListSourcesResponse.FromString,
        )
        if not forge:
            proof = make_proof(
                key, htm="POST", htu=app.settings.public_url + LIST, access_token=token
            )
            reply = await call(
                pb.ListSourcesRequest(),
                metadata=(("authorization", f"DPoP {token}"), ("dpop", proof)),
            )
            assert list(reply.items) == []
            return
        # A direct gRPC caller cannot claim to be the gateway: its x-forwarded-* are ignored.
        rest_proof = make_proof(
            key, htm="GET", htu=app.settings.public_url + "/jobengine/sources", access_token=token
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(
                pb.ListSourcesRequest(),
                metadata=(
                    ("authorization", f"DPoP {token}"),
                    ("dpop", rest_proof),
                    ("x-forwarded-method", "GET"),
                    ("x-forwarded-uri", "/jobengine/sources"),
                ),
            )
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        trailers = dict(err.value.trailing_metadata() or ())
        assert 'error="invalid_dpop_proof"' in str(trailers["www-authenticate"])

"""`typ: application/dpop+jwt` is `dpop+jwt` at the running server (issue 8, item 7):
a proof with the full media type gets a DPoP-bound token and calls the resource server
with it, over REST and gRPC (RFC 7515 §4.1.9; the unit cases are in
tests/unit/identity/test_typ_media_types.py)."""

from __future__ import annotations

import grpc
import httpx
import pytest

from orchestrator.jobengine.v1 import sources_service_pb2 as pb
from server.app import Application
from tests.support.auth import TokenFactory, token_form
from tests.unit.identity.proofs import client_key, make_proof

LIST = "/orchestrator.jobengine.v1.SourcesService/ListSources"


@pytest.mark.parametrize("typ", ["application/dpop+jwt", "Application/DPoP+JWT"])
async def test_a_proof_typed_with_the_full_media_type_works_everywhere(
    app: Application,
    http: httpx.AsyncClient,
    grpc_target: str,
    tokens: TokenFactory,
    tenant: str,
    typ: str,
) -> None:
    key = client_key()
    header = {"typ": typ}
    created = await tokens.client(tenant, ("orch:read",))
    issued = await http.post(
        "/oauth/token",
        data=token_form(created),
        headers={
            "DPoP": make_proof(key, htu=app.identity.urls.endpoint("/oauth/token"), header=header)
        },
    )
    assert issued.status_code == 200, issued.text
    assert issued.json()["token_type"] == "DPoP"
    token = issued.json()["access_token"]

    url = app.settings.public_url + "/jobengine/sources"
    proof = make_proof(key, htm="GET", htu=url, access_token=token, header=header)
    listed = await http.get(
        "/jobengine/sources", headers={"Authorization": f"DPoP {token}", "DPoP": proof}
    )
    assert (listed.status_code, listed.json()) == (200, {"items": []})

    grpc_proof = make_proof(
        key, htu=app.settings.public_url + LIST, access_token=token, header=header
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

"""An Authorization value of a scheme we do not accept is no access token (issue 8,
item 13): 401 with the `WWW-Authenticate` challenges of the schemes we do accept,
Bearer and DPoP, and no error code (RFC 6750 §3.1: a request "attempted using an
unsupported authentication method" lacks authentication information; RFC 7235 §3.1),
over gRPC (UNAUTHENTICATED, the challenge as a trailer) as over REST. A malformed
Bearer or DPoP value stays 400 `invalid_request` (RFC 6750 §3.1). Every secured
method and binding is covered by tests/integration/security/test_authentication.py
("no-scheme", "basic-scheme"); these are the schemes a client may really send.
"""

from __future__ import annotations

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2, status_pb2

from orchestrator.jobengine.v1 import sources_service_pb2 as pb
from server.identity.dpop import DPOP_ALGORITHMS
from tests.support.auth import TokenFactory

LIST = "/orchestrator.jobengine.v1.SourcesService/ListSources"
CHALLENGES = (
    f'Bearer realm="orchestrator", DPoP realm="orchestrator", algs="{" ".join(DPOP_ALGORITHMS)}"'
)
MESSAGE = "the Authorization scheme must be Bearer or DPoP"
SCHEMES = [
    "Basic Y2xpZW50OnNlY3JldA==",
    "Basic",
    'Digest username="client", realm="orchestrator", nonce="n", uri="/", response="r"',
    "Negotiate YIIBhwYGKwYBBQUCoIIBezCCAXc=",
    "NTLM TlRMTVNTUAABAAAAB4IIAAAAAAAAAAAAAAAAAAAAAAA=",
    "Token abcdef",
    'MAC id="h480djs93hd8", ts="1336363200", nonce="dj83hs9s", mac="bhCQXTVyfj5cmA9uKk"',
    "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/s3/aws4_request",
    "Bearer,abc",
    "Bearerabc",
    "X-Bearer abc",
]


def _reason(details: bytes) -> str:
    info = error_details_pb2.ErrorInfo()
    status = status_pb2.Status.FromString(details)
    assert status.details[0].Unpack(info)
    return str(info.reason)


@pytest.mark.parametrize("authorization", SCHEMES)
async def test_another_scheme_is_401_with_our_challenges_over_rest(
    http: httpx.AsyncClient, tenant: str, authorization: str
) -> None:
    response = await http.get(
        "/jobengine/sources",
        headers={"Authorization": authorization, "X-Stella-Tenant": tenant},
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == CHALLENGES
    body = response.json()
    assert (body["error"], body["code"]) == (MESSAGE, "UNAUTHENTICATED")
    assert body["details"][0]["reason"] == "UNAUTHENTICATED"


@pytest.mark.parametrize("authorization", SCHEMES)
async def test_another_scheme_is_unauthenticated_with_our_challenges_over_grpc(
    grpc_target: str, tenant: str, authorization: str
) -> None:
    async with grpc.aio.insecure_channel(grpc_target) as channel:
        call = channel.unary_unary(
            LIST,
            request_serializer=pb.ListSourcesRequest.SerializeToString,
            response_deserializer=pb.ListSourcesResponse.FromString,
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(
                pb.ListSourcesRequest(),
                metadata=(("authorization", authorization), ("x-stella-tenant", tenant)),
            )
    error = caught.value
    assert (error.code(), error.details()) == (grpc.StatusCode.UNAUTHENTICATED, MESSAGE)
    trailers = dict(error.trailing_metadata() or ())
    assert trailers["www-authenticate"] == CHALLENGES
    assert _reason(trailers["grpc-status-details-bin"]) == "UNAUTHENTICATED"


async def test_another_scheme_is_401_before_the_tenant_is_judged(
    http: httpx.AsyncClient,
) -> None:
    """No caller yet: a missing or malformed tenant header is not the first problem."""
    for headers in ({}, {"X-Stella-Tenant": "not a tenant!"}):
        response = await http.get(
            "/jobengine/sources", headers={"Authorization": "Basic YTpi", **headers}
        )
        assert (response.status_code, response.headers["www-authenticate"]) == (401, CHALLENGES)


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        ("Bearer", "the Authorization value is malformed"),
        ("DPoP", "the Authorization value is malformed"),
        ("Bearer not a token!", "the Authorization value is malformed"),
    ],
)
async def test_a_malformed_value_of_our_schemes_stays_invalid_request(
    http: httpx.AsyncClient, tenant: str, authorization: str, message: str
) -> None:
    response = await http.get(
        "/jobengine/sources",
        headers={"Authorization": authorization, "X-Stella-Tenant": tenant},
    )
    assert response.status_code == 400
    scheme = authorization.split(" ", 1)[0]
    prefix = f'{scheme} realm="orchestrator", '
    if scheme == "DPoP":
        prefix += f'algs="{" ".join(DPOP_ALGORITHMS)}", '
    assert response.headers["www-authenticate"] == (
        f'{prefix}error="invalid_request", error_description="{message}"'
    )


async def test_the_same_caller_with_a_bearer_token_gets_through(
    http: httpx.AsyncClient, tokens: TokenFactory, tenant: str
) -> None:
    """The control: the refusals above are about the scheme alone."""
    token = await tokens.token(tenant)
    response = await http.get(
        "/jobengine/sources",
        headers={"Authorization": f"Bearer {token}", "X-Stella-Tenant": tenant},
    )
    assert (response.status_code, response.json()) == (200, {"items": []})

"""Access tokens read with our JWS registry, against the running server (jose.py).

Access tokens were read with joserfc's default registry: a protected header over 512
bytes, or with a header parameter joserfc does not register, was refused, though our
own bound is 8 KiB for the whole token and RFC 7515 §4 says a recipient ignores the
parameters it does not understand unless `crit` names them. The server's own token,
re-signed by its key with such a header and padded to the size limit, is served over
REST and gRPC; one byte past the limit is refused.
"""

from __future__ import annotations

import json

import grpc
import httpx
from joserfc import jws
from joserfc.jws import JWSRegistry

from orchestrator.jobengine.v1 import sources_service_pb2 as pb
from server.app import Application
from server.identity.resource_server.verifier import MAX_TOKEN_BYTES
from tests.integration.test_numeric_dates import claims_of
from tests.support.auth import TokenFactory

SOURCES = "/jobengine/sources"
LIST = "/orchestrator.jobengine.v1.SourcesService/ListSources"


async def _padded(app: Application, token: str, length: int) -> str:
    """`token`'s claims in a token of exactly `length` bytes: a header parameter of
    ~600 bytes no registry knows, the rest a padding claim. (A base64url segment
    cannot have every length, so the header's padding varies by a byte or two.)"""
    key = await app.identity.keys.signing_key()
    registry = JWSRegistry(algorithms=["ES256"], strict_check_header=False)
    registry.max_header_length = MAX_TOKEN_BYTES
    claims = claims_of(token)

    def sign(trace: int, pad: int) -> str:
        header = {"alg": "ES256", "typ": "at+jwt", "kid": key.kid, "x-trace": "t" * trace}
        payload = json.dumps({**claims, "pad": "x" * pad}).encode()
        return jws.serialize_compact(header, payload, key, registry=registry)

    for trace in (600, 601, 602):
        pad = max(0, (length - len(sign(trace, 0))) * 3 // 4 - 4)
        while len(sign(trace, pad)) < length:
            pad += 1
        if len(sign(trace, pad)) == length:
            return sign(trace, pad)
    raise AssertionError(f"no token of {length} bytes")


async def test_a_token_at_the_size_limit_with_an_unknown_header_is_served(
    app: Application, http: httpx.AsyncClient, grpc_target: str, tokens: TokenFactory, tenant: str
) -> None:
    created = await tokens.client(tenant, ("orch:read",))
    token = await _padded(app, await tokens.issue(created, scope="orch:read"), MAX_TOKEN_BYTES)
    listed = await http.get(SOURCES, headers={"Authorization": f"Bearer {token}"})
    assert (listed.status_code, listed.json()) == (200, {"items": []}), listed.text
    async with grpc.aio.insecure_channel(grpc_target) as channel:
        call = channel.unary_unary(
            LIST,
            request_serializer=pb.ListSourcesRequest.SerializeToString,
            response_deserializer=pb.ListSourcesResponse.FromString,
        )
        reply = await call(
            pb.ListSourcesRequest(), metadata=(("authorization", f"Bearer {token}"),)
        )
    assert reply == pb.ListSourcesResponse()

    longer = await _padded(app, token, MAX_TOKEN_BYTES + 1)
    refused = await http.get(SOURCES, headers={"Authorization": f"Bearer {longer}"})
    assert refused.status_code == 400
    assert 'error="invalid_request"' in refused.headers["www-authenticate"]
    assert (
        'error_description="the access token exceeds 8 KiB"'
        in (refused.headers["www-authenticate"])
    )

"""Access tokens are read with our JWS registry, as DPoP proofs are (server/identity/jose.py).

Fault (found with issue 8 item 2): proofs were read with an explicit registry, access
tokens with joserfc's defaults: a protected header over 512 bytes refused whatever
our own bound, and any header parameter joserfc does not register refused, though
RFC 7515 §4 says a recipient ignores the ones it does not understand unless `crit`
names them. Now one bound holds for the whole token, `MAX_TOKEN_BYTES`.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from joserfc.jws import JWSRegistry

from server.identity.authorization_server.keys import KeyRing
from server.identity.resource_server.verifier import (
    MAX_TOKEN_BYTES,
    TokenRejected,
    TokenVerifier,
)
from tests.unit.identity.conftest import ISSUER, MintToken, claims

URL = f"{ISSUER}/jobengine/sources"


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


async def _signed(keys: KeyRing, header: dict[str, Any]) -> str:
    """A token signed with the ring's key whose header is exactly `typ`, `alg`, `kid` and
    `header`, written by hand: joserfc's signing side checks headers as its defaults do."""
    key = await keys.signing_key()
    protected = {"typ": "at+jwt", "alg": "ES256", "kid": key.kid, **header}
    signing_input = (
        _b64(json.dumps(protected).encode()) + b"." + _b64(json.dumps(claims()).encode())
    )
    signature = JWSRegistry.algorithms["ES256"].sign(signing_input, key)
    return (signing_input + b"." + _b64(signature)).decode()


async def _verify(verifier: TokenVerifier, token: str) -> str:
    principal = await verifier.verify(f"Bearer {token}", None, http_method="GET", http_url=URL)
    return principal.jti


async def _refused(verifier: TokenVerifier, token: str) -> TokenRejected:
    with pytest.raises(TokenRejected) as caught:
        await _verify(verifier, token)
    return caught.value


def _near_the_limit(mint: MintToken, room: int, **header: object) -> str:
    """A token `room` bytes under MAX_TOKEN_BYTES, padded in a claim."""
    token = mint(header=header or None, pad="")
    pad = (MAX_TOKEN_BYTES - room - len(token)) * 3 // 4
    token = mint(header=header or None, pad="x" * pad)
    while len(token) < MAX_TOKEN_BYTES - room:
        pad += 1
        token = mint(header=header or None, pad="x" * pad)
    return token


async def test_a_token_at_our_size_limit_verifies(verifier: TokenVerifier, mint: MintToken) -> None:
    token = _near_the_limit(mint, room=0)
    assert len(token) == MAX_TOKEN_BYTES
    assert await _verify(verifier, token)
    longer = mint(pad="x" * MAX_TOKEN_BYTES)
    refused = await _refused(verifier, longer)
    assert (refused.error, refused.description) == (
        "invalid_request",
        "the access token exceeds 8 KiB",
    )


async def test_a_header_over_joserfc_default_bound_verifies(
    verifier: TokenVerifier, keys: KeyRing
) -> None:
    """joserfc's default registry stops at a 512-byte protected header."""
    token = await _signed(keys, {"x-trace": "t" * 1000})
    assert len(token.split(".")[0]) > 1000
    assert await _verify(verifier, token)


async def test_unknown_header_parameters_are_ignored_unless_critical(
    verifier: TokenVerifier, keys: KeyRing
) -> None:
    assert await _verify(verifier, await _signed(keys, {"x-unknown": 1, "cty": "x"}))
    critical = await _signed(keys, {"x-unknown": 1, "crit": ["x-unknown"]})
    refused = await _refused(verifier, critical)
    assert (refused.error, refused.description) == (
        "invalid_token",
        "the access token is not a JWT",
    )


async def test_registered_header_parameters_keep_their_types(
    verifier: TokenVerifier, keys: KeyRing
) -> None:
    refused = await _refused(verifier, await _signed(keys, {"jku": 5}))
    assert (refused.error, refused.description) == (
        "invalid_token",
        "the access token is not a JWT",
    )

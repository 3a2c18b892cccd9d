"""`typ` is a media type, wherever a JWS's `typ` is checked (issue 8, item 7).

RFC 7515 §4.1.9: a recipient "MUST treat it as if 'application/' were prepended to
any 'typ' value not containing a '/'", and media types compare case-insensitively
(RFC 6838 §4.2). So `dpop+jwt` and `application/dpop+jwt` are one type for DPoP
proofs (RFC 9449 §4.2), `at+jwt` and `application/at+jwt` for access tokens (RFC
9068 §2.1), in any case; another type, another top-level type or a doubled prefix is
not. (No client assertions are read: token endpoint clients authenticate by secret.)
"""

from __future__ import annotations

import time

import pytest
from joserfc import jwt

from server.identity.authorization_server.keys import KeyRing
from server.identity.dpop import DpopError, DpopVerifier
from server.identity.jose import has_type, media_type
from server.identity.resource_server.principal import TokenRejected
from server.identity.resource_server.verifier import TokenVerifier
from tests.unit.identity.conftest import MintToken, claims
from tests.unit.identity.proofs import client_key, make_proof

URL = "https://api.example/oauth/token"
SAME = ["", "application/", "Application/", "APPLICATION/"]


@pytest.mark.parametrize(
    ("typ", "expected"),
    [
        ("dpop+jwt", "application/dpop+jwt"),
        ("application/dpop+jwt", "application/dpop+jwt"),
        ("DPoP+JWT", "application/dpop+jwt"),
        ("Application/At+Jwt", "application/at+jwt"),
        ("text/dpop+jwt", "text/dpop+jwt"),
        ("JWT", "application/jwt"),
        ("", None),
        (None, None),
        (["dpop+jwt"], None),
    ],
)
def test_media_type_of_a_typ(typ: object, expected: str | None) -> None:
    assert media_type(typ) == expected


def test_has_type_compares_media_types() -> None:
    assert has_type({"typ": "application/DPOP+jwt"}, "dpop+jwt")
    assert has_type({"typ": "dpop+jwt"}, "application/dpop+jwt")
    assert not has_type({}, "dpop+jwt")
    assert not has_type({"typ": "application/application/dpop+jwt"}, "dpop+jwt")


@pytest.mark.parametrize("prefix", SAME)
@pytest.mark.parametrize("name", ["dpop+jwt", "DPoP+JWT", "DPOP+JWT"])
def test_a_dpop_proof_typ_in_either_spelling_is_accepted(prefix: str, name: str) -> None:
    key = client_key()
    proof = make_proof(key, htu=URL, header={"typ": prefix + name})
    assert DpopVerifier().verify(proof, http_method="POST", http_url=URL).jkt == key.thumbprint()


@pytest.mark.parametrize(
    "typ",
    ["jwt", "application/jwt", "text/dpop+jwt", "application/application/dpop+jwt", "at+jwt"],
)
def test_a_dpop_proof_of_another_type_is_refused(typ: str) -> None:
    proof = make_proof(client_key(), htu=URL, header={"typ": typ})
    with pytest.raises(DpopError, match="typ must be dpop\\+jwt"):
        DpopVerifier().verify(proof, http_method="POST", http_url=URL)


@pytest.mark.parametrize("prefix", SAME)
@pytest.mark.parametrize("name", ["at+jwt", "AT+JWT", "At+Jwt"])
async def test_an_access_token_typ_in_either_spelling_is_accepted(
    verifier: TokenVerifier, mint: MintToken, prefix: str, name: str
) -> None:
    token = mint(header={"typ": prefix + name})
    principal = await verifier.verify(f"Bearer {token}", None, http_method="GET", http_url=URL)
    assert principal.client_id == "client-a"


@pytest.mark.parametrize(
    "typ", ["jwt", "application/jwt", "text/at+jwt", "application/application/at+jwt", "dpop+jwt"]
)
async def test_an_access_token_of_another_type_is_refused(
    verifier: TokenVerifier, keys: KeyRing, typ: str
) -> None:
    signing = await keys.signing_key()
    header = {"alg": "ES256", "typ": typ, "kid": signing.kid}
    token = jwt.encode(header, claims(jti=f"jti-{time.monotonic_ns()}"), signing)
    with pytest.raises(TokenRejected) as refused:
        await verifier.verify(f"Bearer {token}", None, http_method="GET", http_url=URL)
    assert (refused.value.error, refused.value.description) == (
        "invalid_token",
        "the token is not an at+jwt",
    )

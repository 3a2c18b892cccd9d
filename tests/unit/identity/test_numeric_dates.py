"""NumericDate claims are JSON numbers, fractions included (RFC 7519 §2).

Fault (found with issue 8 item 2): a DPoP proof whose `iat` had a fractional part
was refused ("iat must be an integer NumericDate"), though RFC 7519 §2 defines a
NumericDate as "a JSON numeric value ... non-integer values can be represented".
The rule lives in server/identity/jose.numeric_date and holds wherever a numeric
date is read: a proof's `iat`, an access token's `exp`, `nbf` and `iat`.

A neighbour: a revocation was recorded until the token's `exp` truncated to a second,
while the token verifies until `exp` + the leeway, so for the last seconds of its
leeway a revoked token verified again. `TokenVerifier.valid_until` says how long a
token verifies; the revocation endpoint records revocations that long
(tests/integration/test_numeric_dates.py).
"""

from __future__ import annotations

import base64
import json
import math
import time
from typing import Any

import pytest
from joserfc import jws
from joserfc.jwk import ECKey
from joserfc.jws import JWSRegistry

from server.identity.dpop import DpopError, DpopVerifier
from server.identity.jose import numeric_date
from server.identity.resource_server.verifier import LEEWAY_SECONDS, TokenRejected, TokenVerifier
from server.identity.revocation import RevocationList, revoke_token
from server.storage.db import Database
from tests.support.clock import ManualClock
from tests.unit.identity.conftest import ISSUER, MintToken
from tests.unit.identity.proofs import client_key, make_proof

URL = "https://api.example/oauth/token"
RESOURCE = f"{ISSUER}/jobengine/sources"
NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (1_800_000_000, 1_800_000_000.0),
        (1_800_000_000.25, 1_800_000_000.25),
        (0, 0.0),
        (-1.5, -1.5),  # before 1970: a date all the same
        (True, None),
        ("1800000000", None),
        (None, None),
        (math.nan, None),
        (math.inf, None),
        (-math.inf, None),
        (10**400, None),  # past a double
    ],
)
def test_numeric_date(value: object, seconds: float | None) -> None:
    assert numeric_date(value) == seconds


def test_a_proof_iat_may_have_a_fraction() -> None:
    verifier = DpopVerifier(max_age=60, future_skew=5, clock=ManualClock(NOW))
    key = client_key()
    for iat in (NOW - 60, NOW - 59.999, NOW + 0.5, NOW + 5):
        checked = verifier.verify(
            make_proof(key, htu=URL, iat=iat), http_method="POST", http_url=URL
        )
        assert checked.iat == iat
    for iat in (NOW - 60.001, NOW + 5.001):
        with pytest.raises(DpopError) as refused:
            verifier.verify(make_proof(key, htu=URL, iat=iat), http_method="POST", http_url=URL)
        assert str(refused.value) == "iat is outside the acceptable window"


def _raw_proof(key: ECKey, payload: str) -> str:
    """A proof whose payload is exactly `payload` (JSON a client library would not write)."""
    header = {"alg": "ES256", "typ": "dpop+jwt", "jwk": key.as_dict(private=False)}
    registry = JWSRegistry(algorithms=["ES256"])
    return jws.serialize_compact(header, payload.encode(), key, registry=registry)


@pytest.mark.parametrize(
    "iat",
    ["true", '"1800000000"', "NaN", "Infinity", "-Infinity", "1" + "0" * 400, "null", "[1]"],
)
def test_a_proof_iat_that_is_no_json_number_is_refused(iat: str) -> None:
    key = client_key()
    proof = _raw_proof(key, f'{{"htm":"POST","htu":"{URL}","iat":{iat},"jti":"j"}}')
    with pytest.raises(DpopError) as refused:
        DpopVerifier(clock=ManualClock(NOW)).verify(proof, http_method="POST", http_url=URL)
    assert str(refused.value) == "iat must be a NumericDate (seconds since the epoch)"


async def test_access_token_dates_may_have_fractions(
    verifier: TokenVerifier, mint: MintToken, wall: ManualClock
) -> None:
    now = wall()
    token = mint(iat=now - 0.25, nbf=now - 0.5, exp=now + 60.75, jti="jti-fraction")
    principal = await verifier.verify(f"Bearer {token}", None, http_method="GET", http_url=RESOURCE)
    assert (principal.jti, principal.expires_at) == ("jti-fraction", int(now + 60.75))


@pytest.mark.parametrize(
    ("overrides", "description"),
    [
        ({"nbf": 0.5 + LEEWAY_SECONDS + 1}, "invalid or missing claim nbf"),
        ({"iat": 0.5 + LEEWAY_SECONDS + 1}, "invalid or missing claim iat"),
        ({"exp": -LEEWAY_SECONDS - 0.25}, "the access token expired"),
    ],
    ids=["nbf-ahead", "iat-ahead", "exp-past"],
)
async def test_fractional_access_token_dates_are_compared_as_numbers(
    verifier: TokenVerifier,
    mint: MintToken,
    wall: ManualClock,
    overrides: dict[str, float],
    description: str,
) -> None:
    token = mint(**{name: wall() + delta for name, delta in overrides.items()})
    refused = await _refused(verifier, token)
    assert (refused.error, refused.description) == ("invalid_token", description)


async def _refused(verifier: TokenVerifier, token: str) -> TokenRejected:
    with pytest.raises(TokenRejected) as caught:
        await verifier.verify(f"Bearer {token}", None, http_method="GET", http_url=RESOURCE)
    return caught.value


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return decoded


async def test_a_token_is_valid_until_exp_plus_the_leeway(
    verifier: TokenVerifier, mint: MintToken, wall: ManualClock
) -> None:
    token = mint(exp=wall() + 30.5)
    until = verifier.valid_until(_claims(token))
    assert until == wall() + 30.5 + LEEWAY_SECONDS
    wall.advance(30.5 + LEEWAY_SECONDS - 0.5)
    await verifier.verify(f"Bearer {token}", None, http_method="GET", http_url=RESOURCE)
    wall.advance(0.5)  # now == valid_until: joserfc refuses from exp <= now - leeway
    assert (await _refused(verifier, token)).description == "the access token expired"


async def test_a_revocation_recorded_until_valid_until_covers_the_leeway(
    db: Database, verifier: TokenVerifier, mint: MintToken, revocations: RevocationList
) -> None:
    """A token past its `exp` but inside the leeway verifies; revoked until
    ceil(valid_until), a reload of the list still finds it (the database compares
    the record's end with the present)."""
    token = mint(exp=time.time() - 2.5, jti="jti-in-leeway")
    claims = _claims(token)
    await verifier.verify(f"Bearer {token}", None, http_method="GET", http_url=RESOURCE)
    await revoke_token(
        db,
        jti="jti-in-leeway",
        client_id="client-a",
        expires_at=math.ceil(verifier.valid_until(claims)),
    )
    revocations.invalidate()  # a reload: what the database says, nothing local
    assert (await _refused(verifier, token)).description == "the access token was revoked"

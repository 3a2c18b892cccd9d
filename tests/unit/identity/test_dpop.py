"""DPoP proof checks (RFC 9449 §4.3), one broken property per case."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, RSAKey

from server.identity.dpop import (
    DpopError,
    DpopVerifier,
    access_token_hash,
)
from server.identity.url_equivalence import normalize_url
from tests.support.clock import ManualClock
from tests.unit.identity.proofs import client_key, make_proof

URL = "https://api.example/oauth/token"
NOW = 1_790_000_000  # the verifiers' wall clock where a case needs a fixed time


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_valid_proof_yields_thumbprint_and_claims() -> None:
    key = client_key()
    proof = make_proof(key, htu=URL)
    checked = DpopVerifier().verify(proof, http_method="POST", http_url=URL)
    assert checked.jkt == key.thumbprint()
    assert (checked.htm, checked.htu) == ("POST", URL)


def test_thumbprint_is_rfc7638() -> None:
    # RFC 7638 §3.1 example key and its SHA-256 thumbprint.
    jwk: dict[str, str | list[str]] = {
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1"
        "L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5"
        "v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08q"
        "NLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awa"
        "pJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert RSAKey.import_key(jwk).thumbprint() == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_query_and_fragment_are_ignored_and_urls_normalized() -> None:
    key = client_key()
    verifier = DpopVerifier()
    proof = make_proof(key, htu="HTTPS://API.example:443/oauth/token#frag")
    verifier.verify(proof, http_method="POST", http_url="https://api.example/oauth/token?x=1")
    assert normalize_url("http://h:80/") == normalize_url("http://H")
    assert normalize_url("ftp://h/") is None


# The jti replay check (`first_use`, on the store replicas share): test_replay.py.


def _proof_cases() -> list[tuple[str, dict[str, Any], str]]:
    return [
        ("wrong-htm", {"htm": "GET"}, "htm"),
        ("wrong-host", {"htu": "https://evil.example/oauth/token"}, "htu"),
        ("wrong-path", {"htu": "https://api.example/oauth/revoke"}, "htu"),
        ("wrong-scheme", {"htu": "http://api.example/oauth/token"}, "htu"),
        ("htu-not-url", {"htu": "not a url"}, "htu"),
        ("iat-old", {"iat": NOW - 120}, "iat"),
        ("iat-future", {"iat": NOW + 120}, "iat"),
        ("iat-string", {"iat": "now"}, "iat"),
        ("no-jti", {"jti": None}, "jti"),
        ("typ-jwt", {"header": {"typ": "JWT"}}, "typ"),
    ]


@pytest.mark.parametrize(
    ("changes", "message"),
    [(case[1], case[2]) for case in _proof_cases()],
    ids=[case[0] for case in _proof_cases()],
)
def test_broken_proofs_are_refused(changes: dict[str, Any], message: str) -> None:
    proof = make_proof(client_key(), **{"htu": URL, "iat": NOW, **changes})
    with pytest.raises(DpopError, match=message):
        DpopVerifier(clock=ManualClock(NOW)).verify(proof, http_method="POST", http_url=URL)


def test_iat_window_is_max_age_back_and_future_skew_ahead() -> None:
    clock = ManualClock(NOW)
    verifier = DpopVerifier(max_age=60, future_skew=5, clock=clock)
    key = client_key()
    for iat in (NOW - 60, NOW + 5):
        checked = verifier.verify(
            make_proof(key, htu=URL, iat=iat), http_method="POST", http_url=URL
        )
        assert checked.iat == iat
    for iat in (NOW - 61, NOW + 6):
        with pytest.raises(DpopError) as refused:
            verifier.verify(make_proof(key, htu=URL, iat=iat), http_method="POST", http_url=URL)
        assert str(refused.value) == "iat is outside the acceptable window"
    proof = make_proof(key, htu=URL, iat=NOW)
    clock.advance(61)  # the same proof, a second too late
    with pytest.raises(DpopError) as late:
        verifier.verify(proof, http_method="POST", http_url=URL)
    assert str(late.value) == "iat is outside the acceptable window"


def test_ath_must_hash_the_presented_token() -> None:
    key = client_key()
    verifier = DpopVerifier()
    good = make_proof(key, htu=URL, access_token="token-a")
    verifier.verify(good, http_method="POST", http_url=URL, access_token="token-a")
    with pytest.raises(DpopError, match="ath"):
        verifier.verify(
            make_proof(key, htu=URL, access_token="token-a"),
            http_method="POST",
            http_url=URL,
            access_token="token-b",
        )
    with pytest.raises(DpopError, match="ath"):
        verifier.verify(
            make_proof(key, htu=URL), http_method="POST", http_url=URL, access_token="token-a"
        )
    digest = hashlib.sha256(b"token-a").digest()
    assert access_token_hash("token-a") == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def test_alg_none_is_refused() -> None:
    key = client_key()
    header = {"alg": "none", "typ": "dpop+jwt", "jwk": key.as_dict(private=False)}
    body = {"htm": "POST", "htu": URL, "iat": int(time.time()), "jti": "n"}
    proof = f"{_b64(header)}.{_b64(body)}."
    with pytest.raises(DpopError, match="alg"):
        DpopVerifier().verify(proof, http_method="POST", http_url=URL)


def test_hmac_proof_is_refused() -> None:
    secret = OctKey.generate_key(256)
    claims = {"htm": "POST", "htu": URL, "iat": int(time.time()), "jti": "h"}
    proof = jwt.encode({"alg": "HS256", "typ": "dpop+jwt", "jwk": secret.as_dict()}, claims, secret)
    with pytest.raises(DpopError, match="alg"):
        DpopVerifier().verify(proof, http_method="POST", http_url=URL)


def test_private_jwk_in_header_is_refused() -> None:
    key = client_key()
    proof = make_proof(key, htu=URL, jwk=key.as_dict(private=True))
    with pytest.raises(DpopError, match="public key"):
        DpopVerifier().verify(proof, http_method="POST", http_url=URL)


def test_signature_must_match_the_embedded_jwk() -> None:
    signer, other = client_key(), ECKey.generate_key("P-256")
    proof = make_proof(signer, htu=URL, jwk=other.as_dict(private=False))
    with pytest.raises(DpopError, match="signature"):
        DpopVerifier().verify(proof, http_method="POST", http_url=URL)


def test_missing_jwk_is_refused() -> None:
    key = client_key()
    claims = {"htm": "POST", "htu": URL, "iat": int(time.time()), "jti": "m"}
    proof = jwt.encode({"alg": "ES256", "typ": "dpop+jwt"}, claims, key)
    with pytest.raises(DpopError, match="jwk"):
        DpopVerifier().verify(proof, http_method="POST", http_url=URL)


@pytest.mark.parametrize(
    "proof",
    ["", "garbage", "a.b.c", "...", "é.é.é", "x" * 9000, f"{_b64({'typ': 'dpop+jwt'})}.e30.AA"],
    ids=["empty", "word", "three-parts", "dots", "non-ascii", "oversized", "no-alg"],
)
def test_garbage_is_refused_cleanly(proof: str) -> None:
    with pytest.raises(DpopError):
        DpopVerifier().verify(proof, http_method="POST", http_url=URL)

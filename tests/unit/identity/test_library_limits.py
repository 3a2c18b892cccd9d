"""A library default must not silently break what we advertise (issue 8, item 2).

joserfc's default registry refuses a JWS header over 512 bytes (an RSA-2048 `jwk`
in a DPoP header is ~570), signatures over 1,024 base64url bytes (RSA-8192), any
algorithm outside HS256/RS256/ES256 unless named, and any unregistered header
name; and warns on every EdDSA verification. The proof verifier's only bound is
its own: `MAX_PROOF_BYTES` for the whole proof.
"""

from __future__ import annotations

import pytest
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey

from server.identity.dpop import DPOP_ALGORITHMS, MAX_PROOF_BYTES, DpopError, DpopVerifier
from server.identity.jose import public_key
from tests.unit.identity.proofs import make_proof

URL = "https://api.example/oauth/token"

KEYS: dict[str, list[Key]] = {
    "ES256": [ECKey.generate_key("P-256")],
    "ES384": [ECKey.generate_key("P-384")],
    "ES512": [ECKey.generate_key("P-521")],
    "EdDSA": [OKPKey.generate_key("Ed25519"), OKPKey.generate_key("Ed448")],
    "PS256": [RSAKey.generate_key(2048), RSAKey.generate_key(3072)],
    "RS256": [RSAKey.generate_key(2048), RSAKey.generate_key(3072)],
}


def test_every_advertised_algorithm_has_keys_here() -> None:
    assert sorted(KEYS) == sorted(DPOP_ALGORITHMS)


@pytest.mark.parametrize(
    ("alg", "key"),
    [(alg, key) for alg in DPOP_ALGORITHMS for key in KEYS.get(alg, [])],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_each_advertised_algorithm_verifies(alg: str, key: Key) -> None:
    proof = make_proof(key, htu=URL, header={"alg": alg})
    checked = DpopVerifier().verify(proof, http_method="POST", http_url=URL)
    assert checked.jkt == key.thumbprint()


def test_a_proof_up_to_our_own_bound_is_read_past_it_refused() -> None:
    """RSA-8192: a ~1.4 KB header and a 1,366-byte signature, both over joserfc's
    defaults and well under MAX_PROOF_BYTES; padding claims then cross our bound."""
    key = RSAKey.generate_key(8192)
    proof = make_proof(key, htu=URL, header={"alg": "RS256"})
    assert len(proof) < MAX_PROOF_BYTES
    assert DpopVerifier().verify(proof, http_method="POST", http_url=URL).jkt == key.thumbprint()
    padded = make_proof(key, htu=URL, header={"alg": "RS256"}, pad="x" * MAX_PROOF_BYTES)
    with pytest.raises(DpopError, match="at most 8 KiB"):
        DpopVerifier().verify(padded, http_method="POST", http_url=URL)


def test_public_key_reads_only_the_thumbprint_members() -> None:
    key = ECKey.generate_key("P-256")
    jwk = {**key.as_dict(private=False), "key_ops": ["x-other"], "use": "x", "ext": True}
    assert public_key(jwk).thumbprint() == key.thumbprint()


@pytest.mark.parametrize(
    "jwk",
    [
        {"kty": "oct", "k": "c2VjcmV0"},
        {"kty": "EC", "crv": "P-256", "x": "AA"},
        {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"},
        {"kty": "RSA", "n": 5, "e": "AQAB"},
        {"kty": "XYZ"},
    ],
    ids=["symmetric", "missing-y", "off-curve", "n-not-a-string", "unknown-kty"],
)
def test_public_key_refuses_what_is_no_public_key(jwk: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        public_key(jwk)

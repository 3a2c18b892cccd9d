"""RSA keys under 2048 bits are refused (RFC 7518 §3.3 for RS*, §3.5 for PS*).

Fault (found with issue 8 item 2): a DPoP proof signed RS256 or PS256 with a
1024-bit RSA key verified; RFC 7518 says "A key of size 2048 bits or larger MUST be
used with these algorithms". server/identity/jose.public_key refuses a smaller
modulus, counting its bits before joserfc imports it (joserfc takes it with a
SecurityWarning), and the proof is refused as invalid_dpop_proof naming the size.
"""

from __future__ import annotations

import warnings

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey

from server.identity.dpop import DpopError, DpopVerifier
from server.identity.jose import MIN_RSA_BITS, KeyTooSmall, public_key
from tests.unit.identity.proofs import make_proof

URL = "https://api.example/oauth/token"


def rsa_key(bits: int) -> RSAKey:
    """An RSA key of any size: joserfc warns (an error here) under 2048 bits."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return RSAKey.import_key(private)


@pytest.mark.parametrize("bits", [1024, 1536, 2047])
@pytest.mark.parametrize("alg", ["RS256", "PS256"])
def test_a_proof_with_a_small_rsa_key_is_refused_naming_its_size(alg: str, bits: int) -> None:
    proof = make_proof(rsa_key(bits), htu=URL, header={"alg": alg})
    with pytest.raises(DpopError) as refused:
        DpopVerifier().verify(proof, http_method="POST", http_url=URL)
    assert str(refused.value) == (
        f"jwk is a {bits}-bit RSA key; RSA signatures need at least 2048 bits "
        "(RFC 7518 sections 3.3 and 3.5)"
    )


@pytest.mark.parametrize("bits", [2048, 2049, 3072])
def test_rsa_keys_of_2048_bits_and_more_are_read(bits: int) -> None:
    key = rsa_key(bits)
    assert public_key(key.as_dict(private=False)).thumbprint() == key.thumbprint()
    proof = make_proof(key, htu=URL, header={"alg": "PS256"})
    assert DpopVerifier().verify(proof, http_method="POST", http_url=URL).jkt == key.thumbprint()


def test_the_size_is_the_modulus_bit_length() -> None:
    """Leading zero octets of `n` do not count (RFC 7518 §6.3.1.1 forbids them anyway)."""
    jwk = rsa_key(1024).as_dict(private=False)
    with pytest.raises(KeyTooSmall, match="1024-bit"):
        public_key({**jwk, "n": "AAAA" + str(jwk["n"])})
    with pytest.raises(KeyTooSmall, match="8-bit"):
        public_key({"kty": "RSA", "n": "_w", "e": "AQAB"})
    with pytest.raises(ValueError, match="not a valid public key"):
        public_key({"kty": "RSA", "n": "A", "e": "AQAB"})  # no base64url value


@pytest.mark.parametrize(
    "key",
    [ECKey.generate_key("P-256"), ECKey.generate_key("P-521"), OKPKey.generate_key("Ed25519")],
    ids=["P-256", "P-521", "Ed25519"],
)
def test_other_key_types_have_their_curve_sizes(key: Key) -> None:
    assert public_key(key.as_dict(private=False)).thumbprint() == key.thumbprint()
    assert MIN_RSA_BITS == 2048

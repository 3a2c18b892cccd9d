"""DPoP proofs (RFC 9449): proof-of-possession of a client key, on joserfc.

A proof is a JWS the client signs per request with a key whose public half rides
in the header. `DpopVerifier.verify` performs the checks of RFC 9449 §4.3:

1. one well-formed compact JWS, at most `MAX_PROOF_BYTES`;
2. `typ` is the media type `application/dpop+jwt`, spelled `dpop+jwt` or in full,
   in any case (RFC 7515 §4.1.9); `alg` is an asymmetric algorithm of
   `DPOP_ALGORITHMS` (never `none`, never HMAC);
3. `jwk` is a public key (no private members; its advisory members ignored; RSA of
   at least 2048 bits, RFC 7518 §3.3 and §3.5) and the signature verifies with it;
4. `htm` is the request's method, `htu` its URL (compared after RFC 3986
   §6.2.2-6.2.3 normalization, `url_equivalence.py`; query and fragment ignored);
5. `iat` is a NumericDate (any JSON number, a fraction included: RFC 7519 §2)
   within [now - `max_age`, now + `future_skew`];
6. for a resource request, `ath` is base64url(SHA-256(access token));
7. `jti` was not seen before with this key: `DpopVerifier.first_use`, awaited by the
   caller once every other check (its own included) has passed.

The result's `jkt` is the key's RFC 7638 thumbprint: the token endpoint binds it
into the token (`cnf.jkt`), the resource server compares it.

Checks 1-6 are computation only (`verify`, synchronous: the token endpoint runs it
in authlib's worker thread). Check 7 asks the `ReplayStore` every replica shares
(`server/identity/replay.py`: the database, or Redis), one round trip, so a proof is
accepted once across all replicas; its entries expire with the `iat` window. Server
nonces (RFC 9449 §8) are not implemented.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import Key

from server.identity.jose import KeyTooSmall, has_type, jws_registry, numeric_date, public_key
from server.identity.replay import ReplayStore
from server.identity.url_equivalence import normalize_url

DPOP_TYPE = "dpop+jwt"
DPOP_ALGORITHMS: tuple[str, ...] = ("ES256", "ES384", "ES512", "EdDSA", "PS256", "RS256")
MAX_PROOF_BYTES = 8192
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
# joserfc's defaults would refuse an RSA-2048 proof (header over 512 bytes) and any
# unregistered header parameter; see server/identity/jose.py.
_REGISTRY = jws_registry(DPOP_ALGORITHMS, max_bytes=MAX_PROOF_BYTES)


class DpopError(ValueError):
    """A proof that fails a check; the message says which (error `invalid_dpop_proof`)."""


@dataclass(frozen=True, slots=True)
class DpopProof:
    jkt: str  # RFC 7638 thumbprint of the proof key
    jti: str
    htm: str
    htu: str
    iat: float  # seconds since the epoch; a NumericDate may have a fraction


def access_token_hash(access_token: str) -> str:
    """The `ath` claim: base64url(SHA-256(ASCII token)), unpadded (RFC 9449 §4.2)."""
    digest = hashlib.sha256(access_token.encode("ascii", "replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class DpopVerifier:
    def __init__(
        self,
        *,
        max_age: int = 60,
        future_skew: int = 5,
        replay: ReplayStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._max_age = max_age
        self._future_skew = future_skew
        self._clock = clock
        self._replay = replay  # None: `verify` only, `first_use` refuses to guess

    def verify(
        self,
        proof: str,
        *,
        http_method: str,
        http_url: str,
        access_token: str | None = None,
    ) -> DpopProof:
        claims, key = _verified_parts(proof)
        jkt = key.thumbprint()
        if claims.get("htm") != http_method:
            raise DpopError("htm does not match the request method")
        htu = claims.get("htu")
        expected = normalize_url(http_url)
        if not isinstance(htu, str) or expected is None or normalize_url(htu) != expected:
            raise DpopError("htu does not match the request URL")
        iat = numeric_date(claims.get("iat"))
        now = self._clock()
        if iat is None:
            raise DpopError("iat must be a NumericDate (seconds since the epoch)")
        if not now - self._max_age <= iat <= now + self._future_skew:
            raise DpopError("iat is outside the acceptable window")
        if access_token is not None:
            ath = claims.get("ath")
            if not isinstance(ath, str) or not hmac.compare_digest(
                ath.encode(), access_token_hash(access_token).encode()
            ):
                raise DpopError("ath does not match the access token")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not 1 <= len(jti) <= 256:
            raise DpopError("jti must be a string of 1 to 256 characters")
        return DpopProof(jkt=jkt, jti=jti, htm=http_method, htu=htu, iat=iat)

    async def first_use(self, proof: DpopProof) -> None:
        """Check 7: record the proof's (key, `jti`) in the shared replay store until its
        `iat` window closes; DpopError when any replica has accepted it before
        (RFC 9449 §11.1). RuntimeError when this verifier has no store."""
        if self._replay is None:
            raise RuntimeError("DpopVerifier needs a replay store to accept proofs")
        replay_key = hashlib.sha256(f"{proof.jkt}\x00{proof.jti}".encode()).hexdigest()
        expires_at = proof.iat + self._max_age + 1
        if not await self._replay.first_use(replay_key, expires_at=expires_at):
            raise DpopError("proof was already used (jti replay)")


def _verified_parts(proof: str) -> tuple[Mapping[str, Any], Key]:
    if not proof or len(proof) > MAX_PROOF_BYTES or not proof.isascii():
        raise DpopError("proof must be one compact JWS of at most 8 KiB")
    try:
        obj = jws.extract_compact(proof.encode(), registry=_REGISTRY)
        header = obj.headers()
        _REGISTRY.check_header(header)  # registered members' types; `crit` understood
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise DpopError("proof is not a well-formed JWS") from exc
    if not has_type(header, DPOP_TYPE):
        raise DpopError("typ must be dpop+jwt")
    alg = header.get("alg")
    if alg not in DPOP_ALGORITHMS:
        raise DpopError(f"alg must be one of {', '.join(DPOP_ALGORITHMS)}")
    jwk = header.get("jwk")
    if not isinstance(jwk, dict) or _PRIVATE_MEMBERS & set(jwk):
        raise DpopError("jwk must be a public key")
    try:
        key = public_key(jwk)
        valid = jws.validate_compact(obj, key, registry=_REGISTRY)
    except KeyTooSmall as exc:
        raise DpopError(str(exc)) from exc
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise DpopError("proof signature does not verify with its jwk") from exc
    if not valid:
        raise DpopError("proof signature does not verify with its jwk")
    return _claims(obj.payload), key


def _claims(payload: bytes | None) -> Mapping[str, Any]:
    try:
        claims = json.loads(payload or b"")
    except (ValueError, UnicodeDecodeError) as exc:
        raise DpopError("proof payload is not a JSON object") from exc
    if not isinstance(claims, dict):
        raise DpopError("proof payload is not a JSON object")
    return claims

"""Access-token verification for the resource server (RFC 6750, RFC 9068 §4, RFC 9449 §7).

`TokenVerifier.verify` turns an `Authorization` value (and a `DPoP` proof) into a
`Principal`, or raises `TokenRejected` carrying the RFC 6750 error and the
`WWW-Authenticate` challenge to send. A valid token costs no database read: keys
come from the `KeyRing` cache, revocations and disabled clients from the
`RevocationList`, which reloads at most every 0.5 s.

Checks, in order: scheme (`Bearer` or `DPoP`, case-insensitive) and token68
syntax, size (8 KiB), `typ` (`at+jwt`, or `application/at+jwt`, in any case: RFC
7515 §4.1.9), `alg` (ES256 only: never `none`, never HMAC, so a public key can
never be used as an HMAC secret), `kid` known, signature, `iss`, `aud`,
`exp`/`nbf`/`iat` with a small leeway, the RFC 9068 required claims, revocation,
then DPoP binding: a token with `cnf.jkt` presented as `Bearer` is refused, and the
`DPoP` scheme needs a valid proof for this method and URL whose key thumbprint is
the token's `cnf.jkt` and whose `ath` hashes the token.

The JWS is read with our registry (server/identity/jose.py), as DPoP proofs are:
exactly ES256, header parameters we do not know ignored unless `crit` lists them
(RFC 7515 §4), and no size limit but `MAX_TOKEN_BYTES` on the whole token, never
joserfc's defaults (a 512-byte header). `exp`, `nbf` and `iat` are NumericDates, a
fraction included (RFC 7519 §2). A token is valid until `exp` + the leeway
(`valid_until`), and so is its revocation (the authorization server records it so).

Verifying the ES256 signature and the claims costs ~150 µs, more than the rest of a
cached read. A token that passed is remembered (bounded, until its `exp`), keyed by
its exact text: the same bytes cannot verify differently later, except that time
passes (the expiry is rechecked on every hit) and keys are retired (a hit needs the
`kid` still published). Revocation and DPoP are checked on every call, never cached.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwt import JWTClaimsRegistry

from server.identity.authorization_server.keys import ALGORITHM, KeyRing
from server.identity.dpop import DPOP_ALGORITHMS, DpopError, DpopVerifier
from server.identity.jose import has_type, jws_registry
from server.identity.resource_server.principal import (
    Principal,
    TokenRejected,
    principal_from_claims,
)
from server.identity.revocation import RevocationList
from server.identity.urls import PublicUrls

MAX_TOKEN_BYTES = 8192
VERIFIED_CACHE_SIZE = 10_000
ACCESS_TOKEN_TYPE = "at+jwt"  # RFC 9068 §2.1; `application/at+jwt` is the same type
LEEWAY_SECONDS = 10
_TOKEN68 = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")
_SCHEMES = {"bearer": "Bearer", "dpop": "DPoP"}
# joserfc's default registry would bound the header at 512 bytes and refuse any
# unregistered header parameter; ours has one bound, the token's (jose.py).
_REGISTRY = jws_registry([ALGORITHM], max_bytes=MAX_TOKEN_BYTES)

__all__ = ["DPOP_ALGORITHMS", "Principal", "TokenRejected", "TokenVerifier"]


def parse_authorization(authorization: str | None) -> tuple[str, str]:
    """(scheme, token) from an Authorization value.

    TokenRejected without an error (401, the challenges of Bearer and DPoP: RFC 6750
    §3.1, RFC 7235 §3.1) when the value is absent, blank or of another scheme (Basic,
    Digest, a bare token); `invalid_request` (400) when a Bearer or DPoP value is
    malformed or over 8 KiB."""
    if authorization is None or not authorization.strip():
        raise TokenRejected(None, "an access token is required")
    scheme, _, token = authorization.strip().partition(" ")
    canonical = _SCHEMES.get(scheme.lower())
    if canonical is None:
        # No access token in a scheme we accept is no credentials (RFC 6750 §3.1, "an
        # unsupported authentication method"): 401 with both challenges, no error code.
        raise TokenRejected(None, "the Authorization scheme must be Bearer or DPoP")
    token = token.strip()
    if len(token) > MAX_TOKEN_BYTES:
        raise TokenRejected("invalid_request", "the access token exceeds 8 KiB", scheme=canonical)
    if not token or not _TOKEN68.match(token):
        raise TokenRejected(
            "invalid_request", "the Authorization value is malformed", scheme=canonical
        )
    return canonical, token


def unverified_kid(token: str) -> str | None:
    """The `kid` of a compact JWS header, unverified (to pick or load the key)."""
    try:
        kid = jws.extract_compact(token.encode(), registry=_REGISTRY).headers().get("kid")
    except (JoseError, ValueError, TypeError, KeyError, UnicodeError):
        return None
    return kid if isinstance(kid, str) else None


@dataclass(frozen=True, slots=True)
class _Verified:
    """What verifying one access token found: its claims, its key id, when it stops
    verifying (`TokenVerifier.valid_until`) and its principal."""

    claims: dict[str, Any]
    kid: str
    invalid_from: float
    principal: Principal


class TokenVerifier:
    def __init__(
        self,
        *,
        keys: KeyRing,
        revocations: RevocationList,
        dpop: DpopVerifier,
        urls: PublicUrls,
        leeway: int = LEEWAY_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = keys
        self._revocations = revocations
        self._dpop = dpop
        self._issuer = urls.issuer
        self._audience = urls.audience
        self._leeway = leeway
        self._clock = clock
        # token text -> what verifying it found; insertion-ordered for eviction
        self._verified: dict[str, _Verified] = {}
        self._writing = threading.Lock()

    async def verify(
        self,
        authorization: str | None,
        dpop_proof: str | None,
        *,
        http_method: str,
        http_url: str,
    ) -> Principal:
        """The caller behind `authorization`, or TokenRejected with the challenge to send."""
        scheme, token = parse_authorization(authorization)
        await self.prepare(token)
        claims = self.decode(token, scheme=scheme)
        if self.is_revoked(claims):
            raise TokenRejected("invalid_token", "the access token was revoked", scheme=scheme)
        jkt = _confirmation(claims)
        if scheme == "Bearer" and jkt is not None:
            raise TokenRejected(
                "invalid_token", "a DPoP-bound token must be sent with the DPoP scheme"
            )
        if scheme == "DPoP":
            await self._check_proof(
                token, jkt, dpop_proof, http_method=http_method, http_url=http_url
            )
        return self._principal(token, claims)

    async def prepare(self, token: str) -> None:
        """Load what `decode` and `is_revoked` need: the token's key, fresh revocations.
        A token verified before names its key from memory (its header is not parsed
        again on every call)."""
        hit = self._verified.get(token)
        kid = hit.kid if hit is not None else unverified_kid(token)
        if kid is not None:
            await self._keys.resolve(kid)
        await self._revocations.refresh_if_stale()

    def decode(self, token: str, *, scheme: str = "Bearer") -> dict[str, Any]:
        """Verified, validated claims of an access token (from memory only). Safe to
        call from a worker thread (introspection and revocation do) while the event
        loop verifies: the cache is changed under a lock."""
        hit = self._verified.get(token)
        if hit is not None:
            if self._clock() < hit.invalid_from and self._keys.get(hit.kid) is not None:
                return hit.claims
            with self._writing:
                self._verified.pop(token, None)
        verified = self._decode(token, scheme=scheme)
        with self._writing:
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                del self._verified[next(iter(self._verified))]  # the oldest entry
            self._verified[token] = verified
        return verified.claims

    def _principal(self, token: str, claims: dict[str, Any]) -> Principal:
        """The principal found when the token was verified (a Principal is immutable:
        built once per token, not once per call)."""
        hit = self._verified.get(token)
        if hit is None or hit.claims is not claims:
            return principal_from_claims(claims)
        return hit.principal

    def valid_until(self, claims: Mapping[str, Any]) -> float:
        """When a token with these (validated) claims stops verifying, in seconds since
        the epoch: `exp` + the leeway, as joserfc refuses from `exp <= now - leeway`.
        A revocation must last that long, or the token would verify again."""
        return float(claims["exp"]) + self._leeway

    def _decode(self, token: str, *, scheme: str) -> _Verified:
        if len(token) > MAX_TOKEN_BYTES or not token.isascii():
            raise TokenRejected("invalid_token", "the access token is malformed", scheme=scheme)
        try:
            obj = jws.extract_compact(token.encode(), registry=_REGISTRY)
            header = obj.headers()
            _REGISTRY.check_header(header)  # registered members' types; `crit` understood
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise TokenRejected(
                "invalid_token", "the access token is not a JWT", scheme=scheme
            ) from exc
        if not has_type(header, ACCESS_TOKEN_TYPE):
            raise TokenRejected("invalid_token", "the token is not an at+jwt", scheme=scheme)
        if header.get("alg") != ALGORITHM:
            raise TokenRejected("invalid_token", f"alg must be {ALGORITHM}", scheme=scheme)
        kid = header.get("kid")
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None or not isinstance(kid, str):
            raise TokenRejected("invalid_token", "unknown signing key", scheme=scheme)
        try:
            valid = jws.validate_compact(obj, key, registry=_REGISTRY)
            claims = json.loads(obj.payload or b"")
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise TokenRejected("invalid_token", "bad signature", scheme=scheme) from exc
        if not valid or not isinstance(claims, dict):
            raise TokenRejected("invalid_token", "bad signature", scheme=scheme)
        principal = self._validate_claims(claims, scheme=scheme)
        return _Verified(claims, kid, self.valid_until(claims), principal)

    def is_revoked(self, claims: Mapping[str, Any]) -> bool:
        return self._revocations.is_revoked(str(claims["jti"])) or self._revocations.is_disabled(
            str(claims["client_id"])
        )

    def _validate_claims(self, claims: dict[str, Any], *, scheme: str) -> Principal:
        registry = JWTClaimsRegistry(
            # joserfc types `now` as int but compares numbers: the exact time keeps a
            # fractional exp/nbf/iat exact (int() would stretch an exp by up to 1 s).
            now=cast(Callable[[], int], self._clock),
            leeway=self._leeway,
            iss={"essential": True, "value": self._issuer},
            aud={"essential": True, "value": self._audience},
            exp={"essential": True},
            iat={"essential": True},
            jti={"essential": True},
            sub={"essential": True},
            client_id={"essential": True},
        )
        try:
            registry.validate(claims)
        except JoseError as exc:
            raise TokenRejected("invalid_token", _claim_problem(exc), scheme=scheme) from exc
        try:
            return principal_from_claims(claims)
        except (TypeError, ValueError) as exc:
            raise TokenRejected("invalid_token", "malformed claims", scheme=scheme) from exc

    async def _check_proof(
        self,
        token: str,
        jkt: str | None,
        proof: str | None,
        *,
        http_method: str,
        http_url: str,
    ) -> None:
        if jkt is None:
            raise TokenRejected("invalid_token", "the token is not DPoP-bound", scheme="DPoP")
        if not proof:
            raise TokenRejected("invalid_dpop_proof", "the DPoP header is required", scheme="DPoP")
        try:
            checked = self._dpop.verify(
                proof, http_method=http_method, http_url=http_url, access_token=token
            )
        except DpopError as exc:
            raise TokenRejected("invalid_dpop_proof", str(exc), scheme="DPoP") from exc
        if checked.jkt != jkt:
            raise TokenRejected(
                "invalid_dpop_proof", "the proof key is not the token's key", scheme="DPoP"
            )
        try:
            await self._dpop.first_use(checked)  # last: a refused proof is not used up
        except DpopError as exc:
            raise TokenRejected("invalid_dpop_proof", str(exc), scheme="DPoP") from exc


def _confirmation(claims: Mapping[str, Any]) -> str | None:
    cnf = claims.get("cnf")
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    return jkt if isinstance(jkt, str) and jkt else None


def _claim_problem(exc: JoseError) -> str:
    claim = getattr(exc, "claim", None)
    if exc.error == "expired_token":
        return "the access token expired"
    if claim:
        return f"invalid or missing claim {claim}"
    return "invalid claims"

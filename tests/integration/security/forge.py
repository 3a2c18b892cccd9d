"""Access tokens made by hand, each wrong in exactly one way.

The claims always start as a copy of a real token's (minted by the server for the
same client), so a forged token differs from a valid one only in the property under
test; `resign` with nothing changed is the control that proves the forging itself
is sound (the server must accept it).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey

ACCESS_TOKEN_TYPE = "at+jwt"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def claims_of(token: str) -> dict[str, Any]:
    """The (unverified) payload of a compact JWS."""
    segment = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    )
    return claims


def fresh(claims: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """`claims` with a new `jti`, issued now, and `changes` applied (None deletes)."""
    now = int(time.time())
    lifetime = int(claims["exp"]) - int(claims["iat"])
    updated = {**claims, "jti": secrets.token_urlsafe(16), "iat": now, "exp": now + lifetime}
    updated.update(changes)
    return {name: value for name, value in updated.items() if value is not None}


def sign(claims: dict[str, Any], key: ECKey, **header: Any) -> str:
    """ES256 compact JWS of `claims`; `header` overrides typ/alg/kid."""
    protected = {"typ": ACCESS_TOKEN_TYPE, "alg": "ES256", "kid": key.kid, **header}
    return jwt.encode(protected, claims, key)


def unsigned(claims: dict[str, Any], kid: str | None) -> str:
    """`alg: none` (RFC 7519 §6): an empty signature."""
    header = {"typ": ACCESS_TOKEN_TYPE, "alg": "none", "kid": kid}
    return f"{b64json(header)}.{b64json(claims)}."


def hmac_with_public_key(claims: dict[str, Any], public_key: ECKey) -> str:
    """The algorithm-confusion attack: HS256 with the server's public key (PEM, as a
    naive library would load it) as the shared secret. Computed by hand so no library
    guard stands between the attacker and the server."""
    header = {"typ": ACCESS_TOKEN_TYPE, "alg": "HS256", "kid": public_key.kid}
    signing_input = f"{b64json(header)}.{b64json(claims)}".encode()
    secret = public_key.as_pem(private=False)
    signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return f"{signing_input.decode()}.{b64url(signature)}"


def impostor_key(kid: str | None = None) -> ECKey:
    """A fresh P-256 key; with `kid`, it claims to be that published key."""
    if kid is None:
        return ECKey.generate_key("P-256", auto_kid=True)
    return ECKey.generate_key("P-256", parameters={"kid": kid})

"""DPoP proofs as a client builds them (RFC 9449 §4.2), with knobs to break each check."""

from __future__ import annotations

import secrets
import time
import warnings
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, Key
from joserfc.jws import JWSRegistry

from server.identity.dpop import access_token_hash


def client_key() -> ECKey:
    return ECKey.generate_key("P-256")


def make_proof(
    key: Key,
    *,
    htm: str = "POST",
    htu: str,
    access_token: str | None = None,
    header: dict[str, Any] | None = None,
    jwk: dict[str, Any] | None = None,
    **overrides: Any,
) -> str:
    claims: dict[str, Any] = {
        "htm": htm,
        "htu": htu,
        "iat": int(time.time()),
        "jti": secrets.token_urlsafe(12),
    }
    if access_token is not None:
        claims["ath"] = access_token_hash(access_token)
    claims.update(overrides)
    claims = {name: value for name, value in claims.items() if value is not None}
    protected = {
        "alg": "ES256",
        "typ": "dpop+jwt",
        "jwk": jwk if jwk is not None else key.as_dict(private=False),
        **(header or {}),
    }
    # Any algorithm and header parameter a client may send; joserfc's defaults sign only
    # its "recommended" algorithms, refuse unregistered header names, and warn on EdDSA.
    registry = JWSRegistry(algorithms=[str(protected["alg"])], strict_check_header=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return jwt.encode(protected, claims, key, registry=registry)

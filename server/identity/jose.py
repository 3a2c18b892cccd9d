"""How this server reads a JWS it did not sign: `typ`, header parameters, sizes, keys.

One rule set for every JWS whose header we judge (DPoP proofs, RFC 9449; access
tokens, RFC 9068), so each rule of the JOSE RFCs holds wherever a JWS is read:

- `typ` is a media type (RFC 7515 §4.1.9): compared case-insensitively (RFC 6838
  §4.2), and a value without a `/` means `application/` + value, so `dpop+jwt`,
  `application/dpop+jwt` and `Application/DPoP+JWT` are one type.
- A header parameter we do not understand is ignored unless `crit` lists it (RFC
  7515 §4, §4.1.11). joserfc's default registry refuses every unregistered name.
- Sizes: joserfc's default registry refuses a protected header over 512 bytes and a
  signature over 1,024 (base64url). A DPoP proof carries its key in the header: an
  RSA-2048 `jwk` alone makes it ~570 bytes, so RS256 and PS256, which we advertise,
  could never verify. Our registry's limits are the caller's own bound on the whole
  compact value, so that bound is the only one.
- Algorithms: joserfc accepts only its "recommended" ones (HS256, RS256, ES256)
  unless told otherwise, and warns on every use of one it deprecates (`EdDSA`);
  our registry allows exactly the caller's list, silently.
- JWK members `use`, `key_ops`, `alg`, `kid`, `ext` and any other non-key member
  are advisory (RFC 7517 §4.2-4.5: "other values MAY be used"; WebCrypto exports add
  `ext` and `key_ops`). `public_key` builds the key from the members RFC 7638 §3.2
  names for its `kty` alone, the ones its thumbprint covers.
- RSA keys have at least 2048 bits (RFC 7518 §3.3 for RS*, §3.5 for PS*: "A key of
  size 2048 bits or larger MUST be used"); `public_key` refuses a smaller one with
  KeyTooSmall, which names its size, before joserfc sees it (joserfc takes it with a
  SecurityWarning).
- NumericDate claims (`iat`, `exp`, `nbf`) are JSON numbers, fractions included
  (RFC 7519 §2: "non-integer values can be represented"); `numeric_date` reads one.
  NaN and the infinities, which Python's json reads, are not JSON numbers.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Collection, Mapping
from typing import Any, Final

from joserfc.errors import JoseError, UnsupportedAlgorithmError
from joserfc.jwa import JWSAlgModel
from joserfc.jwk import JWKRegistry, Key
from joserfc.jws import JWSRegistry

MIN_RSA_BITS: Final = 2048  # RFC 7518 §3.3, §3.5
# RFC 7638 §3.2: the required members of each public key type, in the thumbprint.
_KEY_MEMBERS: dict[str, tuple[str, ...]] = {
    "EC": ("crv", "x", "y"),
    "RSA": ("e", "n"),
    "OKP": ("crv", "x"),
}


class KeyTooSmall(ValueError):
    """An RSA key under MIN_RSA_BITS; the message names its size."""


def numeric_date(value: object) -> float | None:
    """A NumericDate claim's seconds since the epoch (RFC 7519 §2: any JSON number, a
    fraction included); None for anything else: a bool, a string, NaN, an infinity,
    an integer too large for a double."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        seconds = float(value)
    except OverflowError:
        return None
    return seconds if math.isfinite(seconds) else None


def media_type(typ: object) -> str | None:
    """The full, lower-case media type a `typ` value names (RFC 7515 §4.1.9);
    None when `typ` is absent or not a non-empty string."""
    if not isinstance(typ, str) or not typ:
        return None
    value = typ.lower()
    return value if "/" in value else f"application/{value}"


def has_type(header: Mapping[str, Any], expected: str) -> bool:
    """Whether the header's `typ` names the media type `expected` (either spelling)."""
    wanted = media_type(expected)
    return wanted is not None and media_type(header.get("typ")) == wanted


class _ChosenAlgorithms(JWSRegistry):
    """Allows exactly the algorithms given, without joserfc's per-call warning for the
    ones it deprecates (`EdDSA`, RFC 9864): the choice was made once, in our list; a
    warning on every verification is noise (an error under `-W error`)."""

    def get_alg(self, name: str) -> JWSAlgModel:
        if name not in self.algorithms or name not in (self.allowed or ()):
            raise UnsupportedAlgorithmError(f"Algorithm of '{name}' is not allowed")
        return self.algorithms[name]


def jws_registry(algorithms: Collection[str], *, max_bytes: int) -> JWSRegistry:
    """A joserfc registry allowing exactly `algorithms`, ignoring header parameters it
    does not know (unless `crit` lists them), with no size limit below `max_bytes`,
    the caller's bound on the whole compact JWS."""
    registry = _ChosenAlgorithms(algorithms=list(algorithms), strict_check_header=False)
    registry.max_header_length = max_bytes
    registry.max_payload_length = max_bytes
    registry.max_signature_length = max_bytes
    return registry


def public_key(jwk: Mapping[str, Any]) -> Key:
    """The public key of an EC, RSA or OKP JWK, from its RFC 7638 members only.

    Raises KeyTooSmall for an RSA modulus under 2048 bits (`jwk is a 1024-bit RSA key;
    RSA signatures need at least 2048 bits`), ValueError for another `kty`, a missing
    or non-string member, or a value joserfc cannot import (a point off the curve, an
    unknown curve)."""
    members = _KEY_MEMBERS.get(str(jwk.get("kty")))
    if members is None:
        raise ValueError("jwk kty must be EC, RSA or OKP")
    if not all(isinstance(jwk.get(name), str) for name in members):
        raise ValueError(f"jwk must have string members {', '.join(members)}")
    if jwk["kty"] == "RSA":
        bits = _modulus_bits(jwk["n"])
        if bits < MIN_RSA_BITS:
            raise KeyTooSmall(
                f"jwk is a {bits}-bit RSA key; RSA signatures need at least "
                f"{MIN_RSA_BITS} bits (RFC 7518 sections 3.3 and 3.5)"
            )
    try:
        return JWKRegistry.import_key({"kty": jwk["kty"], **{n: jwk[n] for n in members}})
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise ValueError("jwk is not a valid public key") from exc


def _modulus_bits(n: str) -> int:
    """The size in bits of an RSA modulus given as base64url (RFC 7518 §6.3.1.1)."""
    try:
        octets = base64.urlsafe_b64decode(n + "=" * (-len(n) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("jwk is not a valid public key") from exc
    return int.from_bytes(octets, "big").bit_length()

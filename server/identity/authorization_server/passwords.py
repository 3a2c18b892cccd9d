"""Client secret hashing with scrypt (RFC 7914), stdlib only.

Stored form: ``scrypt$ln=14,r=8,p=1$<salt>$<hash>`` (base64url, no padding). The
parameters travel with the hash so they can be raised later without invalidating
stored secrets; `verify_secret` refuses parameters outside sane bounds, so a
tampered row cannot make verification allocate gigabytes.

Client secrets are 256-bit random strings, not human passwords: the hash protects
a leaked database from secret reuse, it does not need to slow down guessing of a
weak secret. n = 2^14, r = 8 (16 MiB, ~40 ms) is ample for that.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SCHEME = "scrypt"
LOG2_N = 14
BLOCK_SIZE = 8
PARALLELISM = 1
SALT_BYTES = 16
HASH_BYTES = 32
_LIMITS = {"ln": (10, 20), "r": (1, 16), "p": (1, 4)}


def hash_secret(secret: str) -> str:
    """A new salted hash of `secret`, with its parameters."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(secret, salt, ln=LOG2_N, r=BLOCK_SIZE, p=PARALLELISM, length=HASH_BYTES)
    params = f"ln={LOG2_N},r={BLOCK_SIZE},p={PARALLELISM}"
    return f"{SCHEME}${params}${_b64(salt)}${_b64(digest)}"


def verify_secret(secret: str, stored: str) -> bool:
    """Constant-time check of `secret` against a stored hash; False for any malformed hash."""
    parsed = _parse(stored)
    if parsed is None:
        return False
    ln, r, p, salt, expected = parsed
    actual = _scrypt(secret, salt, ln=ln, r=r, p=p, length=len(expected))
    return hmac.compare_digest(actual, expected)


def generate_secret() -> str:
    """A fresh client secret: 32 random bytes, URL-safe base64 (43 characters,
    RFC 4648 §5), never starting with `-`.

    A secret starting with `-` reads as an option on a command line
    (`worker --client-secret -Xy…` is refused by argparse as a missing value), and
    token_urlsafe starts one secret in 64 that way; those are drawn again, which
    takes log2(64/63) ≈ 0.02 bits of the 256."""
    while True:
        secret = secrets.token_urlsafe(32)
        if not secret.startswith("-"):
            return secret


def _scrypt(secret: str, salt: bytes, *, ln: int, r: int, p: int, length: int) -> bytes:
    n = 1 << ln
    return hashlib.scrypt(
        secret.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r * p, dklen=length
    )


def _parse(stored: str) -> tuple[int, int, int, bytes, bytes] | None:
    parts = stored.split("$")
    if len(parts) != 4 or parts[0] != SCHEME:
        return None
    try:
        params = dict(item.split("=", 1) for item in parts[1].split(","))
        values = {name: int(params[name]) for name in _LIMITS}
        salt, expected = _unb64(parts[2]), _unb64(parts[3])
    except (KeyError, ValueError):
        return None
    if any(not low <= values[name] <= high for name, (low, high) in _LIMITS.items()):
        return None
    if not salt or not 16 <= len(expected) <= 64:
        return None
    return values["ln"], values["r"], values["p"], salt, expected


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    if not text.isascii():
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

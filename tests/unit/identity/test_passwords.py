from __future__ import annotations

import pytest

from server.identity.authorization_server.passwords import (
    generate_secret,
    hash_secret,
    verify_secret,
)


def test_hash_carries_scheme_parameters_salt_and_verifies() -> None:
    stored = hash_secret("s3cret")
    scheme, params, salt, digest = stored.split("$")
    assert (scheme, params) == ("scrypt", "ln=14,r=8,p=1")
    assert salt and digest
    assert verify_secret("s3cret", stored)
    assert not verify_secret("s3creT", stored)
    assert not verify_secret("", stored)


def test_each_hash_gets_its_own_salt() -> None:
    first, second = hash_secret("same"), hash_secret("same")
    assert first != second
    assert verify_secret("same", first) and verify_secret("same", second)


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "plain-text",
        "bcrypt$ln=14,r=8,p=1$c2FsdA$ZGlnZXN0ZGlnZXN0ZGlnZXN0",
        "scrypt$ln=14,r=8$c2FsdA$ZGlnZXN0ZGlnZXN0ZGlnZXN0",
        "scrypt$ln=30,r=8,p=1$c2FsdA$ZGlnZXN0ZGlnZXN0ZGlnZXN0",  # would allocate 256 GiB
        "scrypt$ln=14,r=99,p=1$c2FsdA$ZGlnZXN0ZGlnZXN0ZGlnZXN0",
        "scrypt$ln=x,r=8,p=1$c2FsdA$ZGlnZXN0ZGlnZXN0ZGlnZXN0",
        "scrypt$ln=14,r=8,p=1$$ZGlnZXN0ZGlnZXN0ZGlnZXN0",
        "scrypt$ln=14,r=8,p=1$c2FsdA$AA",
        "scrypt$ln=14,r=8,p=1$c2FsdA$é",
    ],
    ids=[
        "empty",
        "no-scheme",
        "other-scheme",
        "missing-param",
        "n-too-large",
        "r-too-large",
        "non-numeric",
        "empty-salt",
        "short-digest",
        "non-ascii",
    ],
)
def test_malformed_or_hostile_hashes_never_verify(stored: str) -> None:
    assert verify_secret("anything", stored) is False


def test_generated_secrets_are_long_and_distinct() -> None:
    secrets = {generate_secret() for _ in range(20)}
    assert len(secrets) == 20
    assert all(len(secret) == 43 for secret in secrets)


def test_generated_secrets_never_start_with_a_dash() -> None:
    # One token_urlsafe in 64 starts with "-", which a command line reads as an
    # option (`--client-secret -X…`); 2,000 draws would show one with near certainty.
    assert not [s for s in (generate_secret() for _ in range(2000)) if s.startswith("-")]

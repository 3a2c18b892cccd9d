"""Identity unit fixtures: a migrated SQLite file, the key ring and the verifier on it.

Real storage, no servers: the key ring and revocation list read the database the
way they do in production, and tokens are minted with the ring's own keys.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from server.identity.authorization_server.keys import KeyRing
from server.identity.dpop import DpopVerifier
from server.identity.replay import SqlReplayStore
from server.identity.resource_server.verifier import TokenVerifier
from server.identity.revocation import RevocationList
from server.identity.urls import PublicUrls
from server.storage.db import Database
from server.storage.repositories.guards import SqlGuards
from tests.support.clock import ManualClock

ISSUER = "https://orchestrator.example"

MintToken = Callable[..., str]


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'identity.db'}")
    await database.migrate()
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
async def keys(db: Database) -> KeyRing:
    ring = KeyRing(db)
    await ring.load()
    return ring


@pytest.fixture
def urls() -> PublicUrls:
    return PublicUrls.from_setting(ISSUER)


@pytest.fixture
def revocations(db: Database) -> RevocationList:
    return RevocationList(db)


@pytest.fixture
def wall() -> ManualClock:
    """The verifier's wall clock (seconds since the epoch): now, until a test moves it."""
    return ManualClock(float(int(time.time())))


@pytest.fixture
async def guards(db: Database) -> AsyncIterator[SqlGuards]:
    """The replay cache and failure counts replicas share, on this SQLite file."""
    shared = SqlGuards(db)
    try:
        yield shared
    finally:
        await shared.close()


@pytest.fixture
def verifier(
    guards: SqlGuards,
    keys: KeyRing,
    revocations: RevocationList,
    urls: PublicUrls,
    wall: ManualClock,
) -> TokenVerifier:
    replay = SqlReplayStore(guards, clock=wall)
    dpop = DpopVerifier(replay=replay, clock=wall)
    return TokenVerifier(keys=keys, revocations=revocations, dpop=dpop, urls=urls, clock=wall)


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": ISSUER,
        "sub": "client-a",
        "client_id": "client-a",
        "scope": "orch:read orch:quota",
        "jti": f"jti-{time.monotonic_ns()}",
        "iat": now,
        "exp": now + 3600,
        "tenant": "acme",
        "permissions": ["access orchestra api"],
        "quota_reason": "capacity review",
    }
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


@pytest.fixture
async def mint(keys: KeyRing) -> MintToken:
    """Sign claims like the token endpoint does; overrides let tests break one thing."""
    signing = await keys.signing_key()

    def make(
        *, header: dict[str, Any] | None = None, key: ECKey | None = None, **overrides: Any
    ) -> str:
        protected = {"alg": "ES256", "typ": "at+jwt", "kid": signing.kid, **(header or {})}
        return jwt.encode(protected, claims(**overrides), key or signing)

    return make

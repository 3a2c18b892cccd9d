"""Access-token signing keys: ES256 (P-256) JWKs with RFC 7638 thumbprint `kid`s.

States: the newest `current` key signs; `rotate_keys` makes a new current key and
demotes the old one to `previous`, which stays published (JWKS = current +
previous) so tokens it signed verify until they expire; the key before that is
`retired`. Rotate at most once per token lifetime (1 h) to never strand a token.

`KeyRing` is the in-memory cache every verification reads: a known `kid` never
touches the database. An unknown `kid` (another replica rotated) triggers a
reload, at most once per `unknown_kid_interval`, so forged kids cannot turn into
a query per request. The signing key and the published set are reloaded every
`reload_interval`, which is how a replica notices another one's rotation.

Replicas starting together on an empty table may each create a current key; both
are published and valid, the newest signs, and the next rotation demotes both.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from joserfc.jwk import ECKey

from server.storage.db import Database
from server.storage.repositories import identity as repo
from server.storage.tables import SigningKeyRow, utcnow

ALGORITHM = "ES256"
CURVE = "P-256"


@dataclass(frozen=True, slots=True)
class PublishedKey:
    kid: str
    state: str
    public_jwk: dict[str, Any]
    public: ECKey
    private: ECKey


def generate_key() -> ECKey:
    return ECKey.generate_key(CURVE, parameters={"alg": ALGORITHM, "use": "sig"}, auto_kid=True)


def _row(key: ECKey, *, state: str) -> SigningKeyRow:
    public = key.as_dict(private=False)
    return SigningKeyRow(
        kid=str(key.kid),
        alg=ALGORITHM,
        private_jwk=json.dumps(key.as_dict(private=True), sort_keys=True),
        public_jwk=json.dumps(public, sort_keys=True),
        state=state,
    )


async def ensure_signing_key(db: Database) -> None:
    """Create a current key when there is none (first start)."""
    async with db.transaction() as session:
        if await repo.count_current_keys(session) == 0:
            session.add(_row(generate_key(), state=repo.KEY_CURRENT))


async def rotate_keys(db: Database) -> str:
    """One rotation step in one transaction; returns the new current key's kid."""
    key = generate_key()
    async with db.transaction() as session:
        await repo.demote_keys(session, now=utcnow())
        session.add(_row(key, state=repo.KEY_CURRENT))
    return str(key.kid)


class KeyRing:
    def __init__(
        self,
        db: Database,
        *,
        unknown_kid_interval: float = 1.0,
        reload_interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._unknown_kid_interval = unknown_kid_interval
        self._reload_interval = reload_interval
        self._clock = clock
        self._keys: tuple[PublishedKey, ...] = ()
        self._by_kid: dict[str, PublishedKey] = {}
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        """Create the first key if needed, then read the published keys."""
        await ensure_signing_key(self._db)
        await self._reload()

    def get(self, kid: str) -> ECKey | None:
        """The public key of a published `kid`, from memory only."""
        found = self._by_kid.get(kid)
        return found.public if found is not None else None

    async def resolve(self, kid: str) -> ECKey | None:
        """Like `get`, but an unknown kid reloads the keys (rate limited) first."""
        key = self.get(kid)
        if key is None and self._clock() - self._loaded_at >= self._unknown_kid_interval:
            await self._reload(min_age=self._unknown_kid_interval)
            key = self.get(kid)
        return key

    async def signing_key(self) -> ECKey:
        await self._fresh()
        if not self._keys or self._keys[0].state != repo.KEY_CURRENT:
            await self.load()
        return self._keys[0].private

    async def jwks(self) -> list[dict[str, Any]]:
        """The published public keys (current first), as JWK dicts."""
        await self._fresh()
        return [dict(key.public_jwk) for key in self._keys]

    async def rotate(self) -> str:
        kid = await rotate_keys(self._db)
        await self._reload()
        return kid

    async def _fresh(self) -> None:
        if self._clock() - self._loaded_at >= self._reload_interval:
            await self._reload(min_age=self._reload_interval)

    async def _reload(self, *, min_age: float = 0.0) -> None:
        async with self._lock:
            if min_age and self._clock() - self._loaded_at < min_age:
                return  # another task reloaded while this one waited
            async with self._db.read() as conn:
                rows = await repo.published_keys(conn)
            self._install(rows)
            self._loaded_at = self._clock()

    def _install(self, rows: Sequence[Any]) -> None:
        keys = []
        for row in rows:
            private = ECKey.import_key(json.loads(row.private_jwk))
            public_jwk = json.loads(row.public_jwk)
            keys.append(
                PublishedKey(
                    kid=row.kid,
                    state=row.state,
                    public_jwk=public_jwk,
                    public=ECKey.import_key(public_jwk),
                    private=private,
                )
            )
        self._keys = tuple(keys)
        self._by_kid = {key.kid: key for key in keys}

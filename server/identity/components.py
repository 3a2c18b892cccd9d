"""The identity components of one server process, built once at start-up.

`Identity.start` loads the signing keys (creating the first one on an empty
database) and wires the caches the verifier reads. Part of the resource-server
story: `Identity.verifier` is what the authentication interceptor calls. The state
replicas must share per request (the DPoP replay cache, the failed-secret counts)
goes to Redis when a host is given, else to the database; `close()` releases it.

Every component that reads the time takes it from `Clocks`, so a test moves time
forward (token expiry, DPoP `iat` windows, revocation reloads, lockouts) instead
of sleeping.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from authlib.common.security import is_secure_transport  # type: ignore[import-untyped]
from redis.asyncio import Redis

from server.identity.authorization_server.keys import KeyRing
from server.identity.authorization_server.operations import AuthorizationServer
from server.identity.authorization_server.throttle import (
    FailureCounts,
    FailureThrottle,
    RedisFailureCounts,
    SqlFailureCounts,
)
from server.identity.dpop import DpopVerifier
from server.identity.replay import RedisReplayStore, ReplayStore, SqlReplayStore
from server.identity.resource_server.verifier import TokenVerifier
from server.identity.revocation import RevocationList
from server.identity.urls import PublicUrls
from server.storage.db import Database
from server.storage.repositories.guards import SqlGuards

log = logging.getLogger("orchestrator.identity")


@dataclass(frozen=True, slots=True)
class Clocks:
    """The two clocks identity reads, each a callable returning seconds.

    `wall`: seconds since the Unix epoch, compared with token `exp`/`nbf`/`iat`
    (RFC 7519 §4.1) and DPoP proof `iat` (RFC 9449 §4.3), and the time of the state
    replicas share (replay cache entries, failure lockouts). `monotonic`: for this
    process's intervals only (key and revocation reloads), never compared with a claim.
    """

    wall: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic


@dataclass(frozen=True, slots=True)
class Identity:
    urls: PublicUrls
    keys: KeyRing
    revocations: RevocationList
    dpop: DpopVerifier
    verifier: TokenVerifier
    authorization: AuthorizationServer
    shared: SharedState

    @classmethod
    async def start(
        cls,
        db: Database,
        *,
        public_url: str,
        trust_forwarded_headers: bool = False,
        clocks: Clocks | None = None,
        redis: Redis | None = None,
    ) -> Identity:
        """`redis`: a client of the Redis the replicas share (pinged here, closed by
        `close()`); None keeps that state in `db`."""
        urls = PublicUrls.from_setting(public_url, trust_forwarded=trust_forwarded_headers)
        if not is_secure_transport(urls.issuer):
            log.warning(
                "ORCHESTRATOR_PUBLIC_URL %s is plain http on a non-loopback host: OAuth "
                "requests will be refused (RFC 6749 section 1.6); use the https URL",
                urls.issuer,
            )
        clocks = clocks or Clocks()
        keys = KeyRing(db, clock=clocks.monotonic)
        await keys.load()
        revocations = RevocationList(db, clock=clocks.monotonic)
        shared = await SharedState.open(db, redis, clock=clocks.wall)
        dpop = DpopVerifier(replay=shared.replay, clock=clocks.wall)
        verifier = TokenVerifier(
            keys=keys, revocations=revocations, dpop=dpop, urls=urls, clock=clocks.wall
        )
        authorization = AuthorizationServer(
            db=db,
            keys=keys,
            verifier=verifier,
            revocations=revocations,
            dpop=dpop,
            urls=urls,
            throttle=FailureThrottle(shared.failures, clock=clocks.wall),
        )
        return cls(
            urls=urls,
            keys=keys,
            revocations=revocations,
            dpop=dpop,
            verifier=verifier,
            authorization=authorization,
            shared=shared,
        )

    async def close(self) -> None:
        await self.shared.close()


@dataclass(frozen=True, slots=True)
class SharedState:
    """Where the replay cache and failure counts live: Redis, else the database."""

    replay: ReplayStore
    failures: FailureCounts
    close: Callable[[], Awaitable[None]]

    @classmethod
    async def open(
        cls, db: Database, redis: Redis | None, *, clock: Callable[[], float]
    ) -> SharedState:
        if redis is not None:
            await redis.ping()  # a wrong REDIS_HOST fails the start, not the first request
            return cls(
                RedisReplayStore(redis, clock=clock), RedisFailureCounts(redis), redis.aclose
            )
        guards = SqlGuards(db)
        return cls(SqlReplayStore(guards, clock=clock), SqlFailureCounts(guards), guards.close)

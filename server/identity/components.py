"""The identity components of one server process, built once at start-up.

`Identity.start` loads the signing keys (creating the first one on an empty
database) and wires the caches the verifier reads. Part of the resource-server
story: `Identity.verifier` is what the authentication interceptor calls.

Every component that reads the time takes it from `Clocks`, so a test moves time
forward (token expiry, DPoP `iat` windows, revocation reloads, lockouts) instead
of sleeping.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from authlib.common.security import is_secure_transport  # type: ignore[import-untyped]

from server.identity.authorization_server.keys import KeyRing
from server.identity.authorization_server.operations import AuthorizationServer
from server.identity.authorization_server.throttle import FailureThrottle
from server.identity.dpop import DpopVerifier
from server.identity.resource_server.verifier import TokenVerifier
from server.identity.revocation import RevocationList
from server.identity.urls import PublicUrls
from server.storage.db import Database

log = logging.getLogger("orchestrator.identity")


@dataclass(frozen=True, slots=True)
class Clocks:
    """The two clocks identity reads, each a callable returning seconds.

    `wall`: seconds since the Unix epoch, compared with token `exp`/`nbf`/`iat`
    (RFC 7519 §4.1) and DPoP proof `iat` (RFC 9449 §4.3). `monotonic`: for intervals
    only (key and revocation reloads, failure lockouts), never compared with a claim.
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

    @classmethod
    async def start(
        cls,
        db: Database,
        *,
        public_url: str,
        trust_forwarded_headers: bool = False,
        clocks: Clocks | None = None,
    ) -> Identity:
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
        dpop = DpopVerifier(clock=clocks.wall)
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
            throttle=FailureThrottle(clock=clocks.monotonic),
        )
        return cls(
            urls=urls,
            keys=keys,
            revocations=revocations,
            dpop=dpop,
            verifier=verifier,
            authorization=authorization,
        )

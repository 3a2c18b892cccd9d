"""The identity components of one server process, built once at start-up.

`Identity.start` loads the signing keys (creating the first one on an empty
database) and wires the caches the verifier reads. Part of the resource-server
story: `Identity.verifier` is what the authentication interceptor calls.
"""

from __future__ import annotations

import logging
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
class Identity:
    urls: PublicUrls
    keys: KeyRing
    revocations: RevocationList
    dpop: DpopVerifier
    verifier: TokenVerifier
    authorization: AuthorizationServer

    @classmethod
    async def start(
        cls, db: Database, *, public_url: str, trust_forwarded_headers: bool = False
    ) -> Identity:
        urls = PublicUrls.from_setting(public_url, trust_forwarded=trust_forwarded_headers)
        if not is_secure_transport(urls.issuer):
            log.warning(
                "ORCHESTRATOR_PUBLIC_URL %s is plain http on a non-loopback host: OAuth "
                "requests will be refused (RFC 6749 section 1.6); use the https URL",
                urls.issuer,
            )
        keys = KeyRing(db)
        await keys.load()
        revocations = RevocationList(db)
        dpop = DpopVerifier()
        verifier = TokenVerifier(keys=keys, revocations=revocations, dpop=dpop, urls=urls)
        authorization = AuthorizationServer(
            db=db,
            keys=keys,
            verifier=verifier,
            revocations=revocations,
            dpop=dpop,
            urls=urls,
            throttle=FailureThrottle(),
        )
        return cls(
            urls=urls,
            keys=keys,
            revocations=revocations,
            dpop=dpop,
            verifier=verifier,
            authorization=authorization,
        )

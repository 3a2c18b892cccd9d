"""CORS, configured by origins; Starlette's middleware does the protocol work
(preflight answers, Vary, credentials), so this only fixes the defaults: the
headers browsers may send (authorization, DPoP, idempotency, tracing, conditional
requests) and the ones they may read (ETag, deprecation links, retry and
authentication challenges). An API with headers of its own adds them with
`CorsRules.with_headers`."""

from __future__ import annotations

from dataclasses import dataclass, replace

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp

ALLOW_HEADERS = (
    "Authorization",
    "Content-Type",
    "DPoP",
    "Idempotency-Key",
    "If-Match",
    "If-None-Match",
    "traceparent",
)
EXPOSE_HEADERS = (
    "ETag",
    "Deprecation",
    "Link",
    "Retry-After",
    "WWW-Authenticate",
)
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


@dataclass(frozen=True, slots=True)
class CorsRules:
    origins: tuple[str, ...] = ()
    allow_credentials: bool = False
    max_age: int = 600
    allow_headers: tuple[str, ...] = ALLOW_HEADERS  # Access-Control-Allow-Headers
    expose_headers: tuple[str, ...] = EXPOSE_HEADERS  # Access-Control-Expose-Headers

    @classmethod
    def parse(cls, value: str | None) -> CorsRules:
        """A comma-separated origin list, as configured (`*` allows any origin)."""
        origins = tuple(o.strip() for o in (value or "").split(",") if o.strip())
        return cls(origins=origins)

    def with_headers(
        self, *, allow: tuple[str, ...] = (), expose: tuple[str, ...] = ()
    ) -> CorsRules:
        """These rules, browsers also allowed to send `allow` and read `expose`."""
        return replace(
            self,
            allow_headers=(*self.allow_headers, *allow),
            expose_headers=(*self.expose_headers, *expose),
        )


def with_cors(app: ASGIApp, rules: CorsRules | None) -> ASGIApp:
    if rules is None or not rules.origins:
        return app
    return CORSMiddleware(
        app,
        allow_origins=list(rules.origins),
        allow_methods=list(METHODS),
        allow_headers=list(rules.allow_headers),
        expose_headers=list(rules.expose_headers),
        allow_credentials=rules.allow_credentials,
        max_age=rules.max_age,
    )

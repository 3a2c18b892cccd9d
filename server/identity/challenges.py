"""`WWW-Authenticate` challenges of this server, all in one realm (RFC 9110 §11.2).

Every 401 carries a challenge (RFC 9110 §15.5.2): the token, introspection and
revocation endpoints answer `Basic` (client authentication, RFC 6749 §2.3.1, RFC
7617), the resource server `Bearer` (RFC 6750 §3) and `DPoP` (RFC 9449 §7.1). They
share `REALM`, the protection space a client's credentials belong to. Parameter
values are quoted by `gateway.text`; `error_description` is first restricted to the
RFC 6750 §3 character set.
"""

from __future__ import annotations

from gateway.text import challenge, error_description
from server.identity.dpop import DPOP_ALGORITHMS

REALM = "orchestrator"

# RFC 7617 §2.1: `charset="UTF-8"` says client ids and secrets are UTF-8.
BASIC_CHALLENGE = challenge("Basic", [("realm", REALM), ("charset", "UTF-8")])


def resource_challenge(
    scheme: str,
    *,
    error: str | None = None,
    description: str | None = None,
    scope: str | None = None,
    algs: bool = True,
) -> str:
    """One resource-server challenge, `scheme` "Bearer" or "DPoP".

    `DPoP` adds `algs` (RFC 9449 §7.1) unless `algs` is False (a 403 for a scope,
    where the proof itself was accepted); `error` is an RFC 6750 §3.1 / RFC 9449 §7.1
    code, `description` human text (restricted to RFC 6750 §3's set), `scope` the
    space-separated scopes the resource needs (RFC 6750 §3).
    """
    params = [("realm", REALM)]
    if scheme == "DPoP" and algs:
        params.append(("algs", " ".join(DPOP_ALGORITHMS)))
    if error is not None:
        params.append(("error", error))
    if description is not None:
        params.append(("error_description", error_description(description)))
    if scope is not None:
        params.append(("scope", scope))
    return challenge(scheme, params)


def credentials_required_challenge() -> str:
    """Both schemes, without an error: the answer when credentials are missing
    (RFC 6750 §3.1, RFC 9449 §7.1)."""
    return f"{resource_challenge('Bearer')}, {resource_challenge('DPoP')}"

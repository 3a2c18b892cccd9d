"""Discovery documents: authorization server metadata (RFC 8414) and the JWK Set.

The metadata names every endpoint by the configured public URL, so a client that
knows only the issuer finds the rest (`/.well-known/oauth-authorization-server`).
"""

from __future__ import annotations

from typing import Any

from server.identity.authorization_server.oauth2 import AUTH_METHODS, GRANT_TYPE
from server.identity.dpop import DPOP_ALGORITHMS
from server.identity.scopes import SCOPES
from server.identity.urls import (
    INTROSPECTION_PATH,
    JWKS_PATH,
    REVOCATION_PATH,
    TOKEN_PATH,
    PublicUrls,
)


def server_metadata(urls: PublicUrls) -> dict[str, Any]:
    """RFC 8414 §2 members; keys are the RFC names (and our proto field names)."""
    return {
        "issuer": urls.issuer,
        "token_endpoint": urls.endpoint(TOKEN_PATH),
        "jwks_uri": urls.endpoint(JWKS_PATH),
        "introspection_endpoint": urls.endpoint(INTROSPECTION_PATH),
        "revocation_endpoint": urls.endpoint(REVOCATION_PATH),
        "grant_types_supported": [GRANT_TYPE],
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "introspection_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "revocation_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "scopes_supported": list(SCOPES),
        "response_types_supported": [],  # no authorization endpoint
        "dpop_signing_alg_values_supported": list(DPOP_ALGORITHMS),
    }

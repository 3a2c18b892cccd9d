"""The OAuth 2.0 authorization server: token (RFC 6749 §4.4), introspection (RFC
7662), revocation (RFC 7009), metadata (RFC 8414), signing keys and clients."""

"""The resource server's side of identity: verify an access token (RFC 6750, RFC 9068,
RFC 9449 §7) and say who it speaks for, or how it is refused."""

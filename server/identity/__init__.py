"""Identity (DESIGN.md §4.5): an OAuth 2.0 authorization server and the resource
server that checks its tokens, in two subpackages.

- `authorization_server/` issues and manages tokens: the token endpoint and client
  authentication (`operations.py`, `oauth2.py` on authlib), introspection and
  revocation (`introspection_revocation.py`), discovery metadata (`discovery.py`),
  signing keys (`keys.py`), client registration (`clients.py`, `passwords.py`) and
  the failure throttle (`throttle.py`).
- `resource_server/` checks the tokens every API call presents: the access-token
  verifier with its DPoP binding check (`verifier.py`) and who a token speaks for
  (`principal.py`).

Shared by both: the scope vocabulary (`scopes.py`), public URLs (`urls.py`), DPoP
proof checks (`dpop.py`: the token endpoint binds a key, the resource server checks
it), the revocation list (`revocation.py`: written by revocation, read by the
verifier), challenges and their realm (`challenges.py`), and the wiring of one
process (`components.py`). The resource server reads the authorization server's
`KeyRing` directly because both run in one process.

Everything here is transport-free: the gRPC servicer (`server/services/oauth.py`)
and the authentication interceptor hand in plain values read from the request.
"""

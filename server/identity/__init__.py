"""Identity: OAuth 2.0 clients, token issuance (authlib), signing keys, DPoP and the
access-token verifier the resource-server interceptor calls (DESIGN.md §4.5).

Everything here is transport-free: the gRPC servicer (`server/services/oauth.py`)
hands in plain values read from the request and its metadata.
"""

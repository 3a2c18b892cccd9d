"""server/http_surface.admission: the gateway's credentials-presence check, before
it reads a request's body and query (RFC 6750 §3.1)."""

from __future__ import annotations

import pytest
from google.protobuf.descriptor import MethodDescriptor

from gateway.errors import HTTP_STATUS
from orchestrator.identity.v1 import oauth_service_pb2
from orchestrator.jobengine.v1 import sources_service_pb2
from server.http_surface import admission
from server.identity.challenges import credentials_required_challenge

LIST_SOURCES: MethodDescriptor = sources_service_pb2.DESCRIPTOR.services_by_name[
    "SourcesService"
].methods_by_name["ListSources"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"authorization": ""}, {"authorization": "  "}, {"authorization": "Basic YTpi"}],
    ids=["absent", "empty", "blank", "basic"],
)
def test_no_usable_credentials_is_401_with_both_challenges(headers: dict[str, str]) -> None:
    refusal = admission(LIST_SOURCES, headers)
    assert refusal is not None
    assert refusal.http_status is None  # the status's own mapping: UNAUTHENTICATED
    assert HTTP_STATUS[refusal.status.code] == 401
    assert refusal.headers == {"Www-Authenticate": credentials_required_challenge()}
    assert refusal.from_upstream


@pytest.mark.parametrize(
    "authorization",
    ["Bearer x", "DPoP x", "bearer x", "Bearer", "Bearer a b"],
    ids=["bearer", "dpop", "lowercase", "no-token", "malformed"],
)
def test_a_scheme_we_accept_goes_on_to_the_server(authorization: str) -> None:
    """Verifying the token, or refusing a malformed one (400), is the server's."""
    assert admission(LIST_SOURCES, {"authorization": authorization}) is None


def test_a_public_method_is_admitted() -> None:
    methods = [
        method
        for service in oauth_service_pb2.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    ]
    assert methods
    assert [method.name for method in methods if admission(method, {}) is not None] == []

"""A request without usable credentials is 401 before its fields are read (RFC 6750
§3, §3.1): over REST as over gRPC, where the interceptor chain authenticates before
the servicer reads a field. The gateway asks server/http_surface.admission before it
builds the request; a request with a token is validated as before."""

from __future__ import annotations

import httpx
import pytest

from server.identity.challenges import credentials_required_challenge
from tests.support.auth import TokenFactory

CHALLENGE = credentials_required_challenge()


def _unauthenticated(response: httpx.Response) -> None:
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == CHALLENGE
    body = response.json()
    assert (body["code"], body["error"]) == ("UNAUTHENTICATED", "an access token is required")


@pytest.mark.parametrize(
    ("method", "path", "json"),
    [
        ("GET", "/jobengine/sources?access_token=x", None),
        ("GET", "/jobengine/sources?limit=abc", None),
        ("GET", "/jobengine/jobs?limit=abc&unknown=1", None),
        ("POST", "/jobengine/quotas", {"burst": "many", "extra": 1}),
        ("GET", "/orchestrator/sources?limit=abc", None),
    ],
    ids=["access-token-query", "bad-limit", "unknown-parameter", "bad-body", "legacy-path"],
)
async def test_no_credentials_is_401_before_the_fields(
    http: httpx.AsyncClient, method: str, path: str, json: object
) -> None:
    _unauthenticated(await http.request(method, path, json=json))


async def test_an_unsupported_scheme_is_401_before_the_fields(http: httpx.AsyncClient) -> None:
    response = await http.get(
        "/jobengine/sources?limit=abc", headers={"Authorization": "Basic YTpi"}
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == CHALLENGE
    assert response.json()["error"] == "the Authorization scheme must be Bearer or DPoP"


async def test_with_a_token_the_fields_are_checked(
    http: httpx.AsyncClient, tenant: str, tokens: TokenFactory
) -> None:
    headers = await tokens.headers(tenant)
    response = await http.get("/jobengine/sources?limit=abc", headers=headers)
    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_ARGUMENT"
    assert "www-authenticate" not in response.headers


async def test_a_public_endpoint_answers_as_before(http: httpx.AsyncClient) -> None:
    """The token endpoint needs no access token: its own client authentication
    answers (RFC 6749 §5.2), with the Basic challenge, not the resource server's."""
    response = await http.post("/oauth/token", data={"grant_type": "password"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Basic realm="orchestrator", charset="UTF-8"'
    assert response.json() == {
        "error": "invalid_client",
        "error_description": "client authentication is required",
    }

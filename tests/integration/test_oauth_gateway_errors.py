"""The product's OAuth endpoints over real HTTP: errors the gateway raises before the
server is called are RFC 6749 §5.2 bodies too (unit detail: tests/unit/gateway/
test_oauth_errors.py), and the server's own errors pass through unchanged."""

from __future__ import annotations

import httpx
import pytest

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "description"),
    [
        ("POST", "/oauth/token", b"grant_type=client_credentials&client_id=a&client_id=b", FORM,
         400, "invalid parameter 'client_id': given more than once, "
         "but the field takes a single string"),
        ("POST", "/oauth/introspect", b"<token/>", {"Content-Type": "text/xml"}, 415,
         "unsupported content type 'text/xml'; "
         "send application/json or application/x-www-form-urlencoded"),
        ("POST", "/oauth/revoke", b"token=t\xff", FORM, 400,
         "malformed form body: not UTF-8"),
        ("GET", "/oauth/token", b"", {}, 405, "method GET not allowed for /oauth/token"),
    ],
)  # fmt: skip
async def test_gateway_errors_on_oauth_endpoints_are_rfc6749(
    http: httpx.AsyncClient,
    method: str,
    path: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    description: str,
) -> None:
    response = await http.request(method, path, content=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == {"error": "invalid_request", "error_description": description}


async def test_server_errors_on_oauth_endpoints_keep_their_code(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/oauth/token?client_id=ignored", content=b"grant_type=client_credentials", headers=FORM
    )
    assert response.status_code == 401
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == {
        "error": "invalid_client",
        "error_description": "client authentication is required",
    }

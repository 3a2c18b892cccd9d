"""DPoP `htu` is compared with the request URL in RFC 3986 normal form, at the running
server (issue 8, item 3): at the token endpoint and at the resource server, for proofs
and request paths spelled with escapes, dot-segments, other case or a default port."""

from __future__ import annotations

import uuid

import httpx
import pytest
from joserfc.jwk import ECKey

from server.app import Application
from tests.support.auth import TokenFactory, token_form
from tests.unit.identity.proofs import client_key, make_proof

TOKEN = "/oauth/token"


def _spell(base: str, path: str, how: str) -> str:
    """`base + path` written another way that RFC 3986 §6.2.2-6.2.3 makes equal."""
    scheme, rest = base.split("://", 1)
    if how == "escaped-unreserved":
        return base + path[:-1] + f"%{ord(path[-1]):02x}"
    if how == "dot-segment":
        return base + path.replace("/", "/./", 1)
    if how == "double-dot":
        return base + "/x/.." + path
    if how == "escaped-dots":
        return base + "/x/%2E%2e" + path
    if how == "upper-case-scheme-and-host":
        return f"{scheme.upper()}://{rest.upper()}{path}"
    raise AssertionError(how)


SPELLINGS = [
    "escaped-unreserved",
    "dot-segment",
    "double-dot",
    "escaped-dots",
    "upper-case-scheme-and-host",
]


@pytest.mark.parametrize("how", SPELLINGS)
async def test_token_endpoint_accepts_an_equivalent_htu(
    app: Application, http: httpx.AsyncClient, tokens: TokenFactory, tenant: str, how: str
) -> None:
    created = await tokens.client(tenant, ("orch:read",))
    key = client_key()
    htu = _spell(app.settings.public_url, TOKEN, how)
    response = await http.post(
        TOKEN, data=token_form(created), headers={"DPoP": make_proof(key, htu=htu)}
    )
    assert response.status_code == 200, (htu, response.text)
    assert response.json()["token_type"] == "DPoP"


async def test_token_endpoint_reached_by_an_escaped_path(
    app: Application, http: httpx.AsyncClient, tokens: TokenFactory, tenant: str
) -> None:
    """The request itself spelled `/oauth/%74oken`; the proof names `/oauth/token`."""
    created = await tokens.client(tenant, ("orch:read",))
    proof = make_proof(client_key(), htu=app.settings.public_url + TOKEN)
    response = await http.post("/oauth/%74oken", data=token_form(created), headers={"DPoP": proof})
    assert (response.status_code, response.json()["token_type"]) == (200, "DPoP")


async def test_token_endpoint_refuses_a_different_url(
    app: Application, http: httpx.AsyncClient, tokens: TokenFactory, tenant: str
) -> None:
    created = await tokens.client(tenant, ("orch:read",))
    for htu in ("/oauth%2Ftoken", "/oauth/TOKEN", "/oauth/token/"):
        proof = make_proof(client_key(), htu=app.settings.public_url + htu)
        response = await http.post(TOKEN, data=token_form(created), headers={"DPoP": proof})
        assert response.status_code == 400, htu
        assert response.json() == {
            "error": "invalid_dpop_proof",
            "error_description": "htu does not match the request URL",
        }


async def _dpop_token(app: Application, tokens: TokenFactory, tenant: str) -> tuple[str, ECKey]:
    created = await tokens.client(tenant, ("orch:read",))
    key = client_key()
    proof = make_proof(key, htu=app.settings.public_url + TOKEN)
    async with httpx.AsyncClient(base_url=tokens.http_base) as http:
        response = await http.post(TOKEN, data=token_form(created), headers={"DPoP": proof})
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token, key


@pytest.mark.parametrize(
    ("request_path", "htu_path"),
    [
        ("/jobengine/%73ources", "/jobengine/sources"),  # the request escaped
        ("/jobengine/sources", "/jobengine/%73ources"),  # the proof escaped
        ("/jobengine/%73ources", "/jobengine/%73ources"),
        ("/jobengine/sources", "/jobengine/./sources"),
        ("/jobengine/sources", "/x/../jobengine/sources"),
    ],
)
async def test_resource_server_accepts_an_equivalent_htu(
    app: Application,
    http: httpx.AsyncClient,
    tokens: TokenFactory,
    tenant: str,
    request_path: str,
    htu_path: str,
) -> None:
    token, key = await _dpop_token(app, tokens, tenant)
    proof = make_proof(key, htm="GET", htu=app.settings.public_url + htu_path, access_token=token)
    response = await http.get(
        request_path, headers={"Authorization": f"DPoP {token}", "DPoP": proof}
    )
    assert (response.status_code, response.json()) == (200, {"items": []}), response.text


@pytest.mark.parametrize(
    ("request_id", "htu_id"),
    [("a%2fb", "a%2Fb"), ("a%2Fb", "a%2fb"), ("caf%C3%A9", "caf\u00e9"), ("%61bc", "abc")],
)
async def test_resource_server_compares_escapes_in_path_variables(
    app: Application,
    http: httpx.AsyncClient,
    tokens: TokenFactory,
    tenant: str,
    request_id: str,
    htu_id: str,
) -> None:
    """Past authentication the source does not exist: 404, no challenge."""
    token, key = await _dpop_token(app, tokens, tenant)
    suffix = uuid.uuid4().hex[:6]
    htu = f"{app.settings.public_url}/jobengine/sources/{htu_id}{suffix}"
    proof = make_proof(key, htm="GET", htu=htu, access_token=token)
    response = await http.get(
        f"/jobengine/sources/{request_id}{suffix}",
        headers={"Authorization": f"DPoP {token}", "DPoP": proof},
    )
    assert response.status_code == 404, response.text
    assert "www-authenticate" not in response.headers


async def test_resource_server_keeps_an_escaped_slash_apart(
    app: Application, http: httpx.AsyncClient, tokens: TokenFactory, tenant: str
) -> None:
    token, key = await _dpop_token(app, tokens, tenant)
    htu = f"{app.settings.public_url}/jobengine/sources/a/b"
    proof = make_proof(key, htm="GET", htu=htu, access_token=token)
    response = await http.get(
        "/jobengine/sources/a%2Fb", headers={"Authorization": f"DPoP {token}", "DPoP": proof}
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('DPoP realm="orchestrator"')
    assert (
        'error_description="htu does not match the request URL"'
        in (response.headers["www-authenticate"])
    )

"""HEAD wherever GET is bound, as RFC 9110 asks of every general-purpose server (§9.1:
MUST support GET and HEAD; §9.3.2: HEAD answers the header fields GET would, without
the content) and as Starlette routes do. No binding names HEAD: the gateway serves it
from the path's GET binding, lists HEAD in every `Allow` that lists GET, and writes
no body. In process and through the proxy, over real HTTP (uvicorn, h11).
"""

from __future__ import annotations

import httpx
import pytest

# Header fields that differ between two answers by design: the trace id each call gets.
_PER_CALL = {"x-stella-trace-id", "date"}


def _fields(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k not in _PER_CALL}


async def test_head_answers_the_get_header_fields_without_the_body(gateway_url: str) -> None:
    async with httpx.AsyncClient(base_url=gateway_url) as http:
        got = await http.get("/v1/notes/head-1")
        head = await http.head("/v1/notes/head-1")
    assert got.status_code == head.status_code == 200
    assert got.content and head.content == b""
    assert _fields(head) == _fields(got)
    assert head.headers["content-length"] == str(len(got.content))
    assert head.headers["etag"] == got.headers["etag"]


async def test_head_takes_the_conditional_answer_of_get(gateway_url: str) -> None:
    async with httpx.AsyncClient(base_url=gateway_url) as http:
        etag = (await http.get("/v1/notes/head-2")).headers["etag"]
        head = await http.head("/v1/notes/head-2", headers={"If-None-Match": etag})
    assert (head.status_code, head.content, head.headers["etag"]) == (304, b"", etag)


async def test_head_of_a_stream_is_its_header_fields_only(gateway_url: str) -> None:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=10) as http:
        got = await http.get("/v1/count", params={"count": "2"})
        head = await http.head("/v1/count", params={"count": "2"})
    assert got.status_code == head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]


async def test_head_refusals_are_the_get_refusals(gateway_url: str) -> None:
    async with httpx.AsyncClient(base_url=gateway_url) as http:
        got = await http.get("/v1/kitchens/bad%ZZ")
        head = await http.head("/v1/kitchens/bad%ZZ")
    assert got.status_code == head.status_code == 400
    assert head.content == b""


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("HEAD", "/v1/upload", "POST"),  # no GET bound: HEAD is not allowed either
        ("DELETE", "/v1/echo", "POST"),
        ("POST", "/v1/kitchens/k1", "DELETE, GET, HEAD, PATCH"),
        ("PUT", "/v1/notes/n1", "DELETE, GET, HEAD, PATCH"),
    ],
)
async def test_allow_lists_head_wherever_it_lists_get(
    gateway_url: str, method: str, path: str, allow: str
) -> None:
    async with httpx.AsyncClient(base_url=gateway_url) as http:
        response = await http.request(method, path)
    assert (response.status_code, response.headers["allow"]) == (405, allow)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
async def test_the_openapi_document_is_get_and_head_only(gateway_url: str, method: str) -> None:
    """The document exists, so another method is 405 naming what it allows (RFC 9110
    §15.5.6), not the 404 of a path nothing serves."""
    async with httpx.AsyncClient(base_url=gateway_url) as http:
        head = await http.head("/openapi.json")
        refused = await http.request(method, "/openapi.json")
    assert (head.status_code, head.content) == (200, b"")
    assert (refused.status_code, refused.headers["allow"]) == (405, "GET, HEAD")
    assert refused.json()["code"] == "UNIMPLEMENTED"

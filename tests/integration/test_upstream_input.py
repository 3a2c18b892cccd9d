"""What the proxies refuse before calling an upstream (issue 13 critic, item 7).

Faults: POST /summarization/suggest forwarded content and keywords holding NUL and
ESC, POST /report/request forwarded the format "x\\u0000y", and a payload "format"
that disagreed with `format` was silently overwritten ({"payload": {"format": "csv"}}
reached the reporting service as "json"). Now control characters are 400 naming each
field, as POST /ingest refuses them (multi-line texts keep tab and line breaks), a
payload.format other than the report's format is 400 naming payload.format, and
nothing reaches the upstream. A real server and a real HTTP stub.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from server.app import Application
from tests.conftest import settings_for
from tests.support.auth import TokenFactory
from tests.support.stub_upstream import StubUpstream, stub_upstream

CONTROL = "must not contain control characters"
TEXT_CONTROL = "must not contain control characters other than tab and line breaks"


@pytest.fixture(scope="module")
async def stub() -> AsyncIterator[StubUpstream]:
    async with stub_upstream() as running:
        yield running


@pytest.fixture(scope="module")
async def http(
    tmp_path_factory: pytest.TempPathFactory, stub: StubUpstream
) -> AsyncIterator[httpx.AsyncClient]:
    database = tmp_path_factory.mktemp("upstream-input") / "o.db"
    settings = settings_for(f"sqlite+aiosqlite:///{database}").model_copy(
        update={"reporting_url": stub.url, "secure_analyzer_url": stub.url}
    )
    app = Application(settings)
    await app.start()
    try:
        base = f"http://127.0.0.1:{app.http_port}"
        tenant = f"t-{uuid.uuid4().hex[:10]}"
        token = await TokenFactory(app, base).token(tenant)
        headers = {"Authorization": f"Bearer {token}", "X-Stella-Tenant": tenant}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
            yield client
    finally:
        await app.stop(grace=1)


@pytest.fixture(autouse=True)
def _fresh(stub: StubUpstream) -> None:
    stub.reset()


def _refusal(response: httpx.Response) -> tuple[int, str, list[tuple[str, str]]]:
    body = response.json()
    violations = [
        (v["field"], v["description"])
        for d in body["details"]
        if d["@type"].endswith("BadRequest")
        for v in d["fieldViolations"]
    ]
    return response.status_code, body["code"], violations


@pytest.mark.parametrize(
    ("body", "violations"),
    [
        ({"content": "a\x00b"}, [("content", TEXT_CONTROL)]),
        ({"content": "x\x1b[31m"}, [("content", TEXT_CONTROL)]),
        ({"content": "x", "keywords": ["ok", "p\x00ii"]}, [("keywords[1]", CONTROL)]),
        ({"content": "x", "keywords": ["a\nb"]}, [("keywords[0]", CONTROL)]),
        ({"content": "x", "keyword_document": "a\x7f"}, [("keyword_document", TEXT_CONTROL)]),
        (
            {"content": "\x00", "keywords": ["\x1b"], "keyword_document": "\x08"},
            [("content", TEXT_CONTROL), ("keywords[0]", CONTROL),
             ("keyword_document", TEXT_CONTROL)],
        ),
    ],
)  # fmt: skip
async def test_summarization_refuses_control_characters(
    http: httpx.AsyncClient, stub: StubUpstream, body: dict[str, Any], violations: list[Any]
) -> None:
    response = await http.post("/summarization/suggest", json=body)
    assert _refusal(response) == (400, "INVALID_ARGUMENT", violations)
    assert stub.hits == []


async def test_summarization_keeps_tabs_and_line_breaks(
    http: httpx.AsyncClient, stub: StubUpstream
) -> None:
    text = "line one\r\n\tline two\n"
    response = await http.post(
        "/summarization/suggest",
        json={"content": text, "keywords": ["pii"], "keyword_document": "a\nb"},
    )
    assert response.status_code == 200, response.text
    assert stub.hits[0].json() == {"content": text, "keywords": ["pii"], "keyword_document": "a\nb"}


@pytest.mark.parametrize(
    ("body", "violations"),
    [
        ({"kind": "generate", "format": "x\x00y"}, [("format", CONTROL)]),
        ({"kind": "generate", "format": "csv\n"}, [("format", CONTROL)]),
        (
            {"kind": "generate", "payload": {"format": "csv"}},
            [("payload.format", 'is "csv", but the report\'s format is "json" (format, "json"'
              " when empty): set format instead")],
        ),
        (
            {"kind": "life_of_ticket", "format": "pdf", "payload": {"format": 5}},
            [("payload.format", 'is 5, but the report\'s format is "pdf" (format, "json"'
              " when empty): set format instead")],
        ),
        (
            {"kind": "generate", "format": "\x1b", "payload": {"format": "json"}},
            [("format", CONTROL)],
        ),
    ],
)  # fmt: skip
async def test_report_refuses_control_characters_and_a_disagreeing_payload_format(
    http: httpx.AsyncClient, stub: StubUpstream, body: dict[str, Any], violations: list[Any]
) -> None:
    response = await http.post("/report/request", json=body)
    assert _refusal(response) == (400, "INVALID_ARGUMENT", violations)
    assert stub.hits == []


async def test_report_payload_format_may_repeat_the_format(
    http: httpx.AsyncClient, stub: StubUpstream
) -> None:
    cases: list[tuple[dict[str, Any], dict[str, Any]]] = [
        (
            {"kind": "generate", "format": "csv", "payload": {"format": "csv", "n": 1}},
            {"format": "csv", "n": 1},
        ),
        ({"kind": "generate", "payload": {"format": "json"}}, {"format": "json"}),
        ({"kind": "generate", "format": "csv"}, {"format": "csv"}),
    ]
    for body, sent in cases:
        stub.reset()
        response = await http.post("/report/request", json=body)
        assert response.status_code == 200, response.text
        [hit] = stub.hits
        assert hit.json() == sent

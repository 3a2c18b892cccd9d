"""Schemathesis against the running server with its own `/openapi/jobengine.json`: no
5xx, and every status, content type, header and body as the document says.

Hypothesis and schemathesis's requests transport are synchronous, while the server
runs on this test's event loop; the run therefore happens in a worker thread
(`asyncio.to_thread`) and talks to the server over real HTTP. Operations with a
`sourceId` are fuzzed twice: with generated ids (mostly 404s), and with the id of
a source registered first, so that success responses (200, 304) are checked too.
All failures are reported together.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import httpx
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

MAX_EXAMPLES = 20  # per operation and pass: both databases together take ~15 s
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


async def test_jobengine_answers_as_its_document_says(
    http: httpx.AsyncClient, http_base: str, tenant: str, auth_headers: dict[str, str]
) -> None:
    document = (await http.get("/openapi/jobengine.json")).json()
    headers = {**auth_headers, "X-Stella-Operator-Reason": "schemathesis run"}
    created = await http.post(
        "/jobengine/sources", json={"name": "fuzzed", "sourceType": "webhook"}, headers=headers
    )
    assert created.status_code == 201, created.text
    seeds = {"sourceId": created.json()["sourceId"]}
    failures, tried = await asyncio.to_thread(_fuzz, document, http_base, headers, seeds)
    assert tried == sum(len(item) for item in document["paths"].values())
    assert not failures, "\n\n".join(failures)


def _fuzz(
    document: dict[str, Any], base_url: str, headers: dict[str, str], seeds: Mapping[str, str]
) -> tuple[list[str], int]:
    schema = schemathesis.openapi.from_dict(document)
    failures: list[str] = []
    tried = 0
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()  # type: ignore[union-attr]  # an Err raises here
            tried += 1
            names = {p["name"] for p in operation.definition.raw.get("parameters", [])}
            seeded = {name: value for name, value in seeds.items() if name in names}
            for fixed in ({}, seeded) if seeded else ({},):
                try:
                    _fuzz_operation(operation, base_url, headers, fixed, session)
                except (Exception, BaseExceptionGroup) as exc:  # schemathesis raises groups
                    failures.append(f"{operation.label} with {fixed}:\n{exc}")
    return failures, tried


def _fuzz_operation(
    operation: Any,
    base_url: str,
    headers: dict[str, str],
    path_parameters: dict[str, str],
    session: requests.Session,
) -> None:
    strategy = operation.as_strategy(headers=headers, path_parameters=path_parameters or None)

    @given(case=strategy)
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        response = case.call(base_url=base_url, session=session, headers=headers)
        case.validate_response(response, checks=CHECKS, headers=headers)

    run()

"""The JobEngine gateway samples (`docs/api/gateway/samples/orchestrator-*.json`, DESIGN.md
§4.1) still say what the server answers.

The scenario of `tests/support/samples.py` (the one `scripts/record_samples.py`
recorded the files with) runs against a real `orchestrator serve` process, on a
SQLite file and on a new PostgreSQL database; every live exchange, normalised (ids,
times, ETags, trace ids and continuation tokens: see that module), must equal its
file normalised the same way. When one differs, the failure shows the normalised
difference; re-record with `make samples` if the change is intended.
"""

from __future__ import annotations

import difflib
import json
import re

import pytest

from tests.conftest import BACKENDS, _create_pg_database, _drop_pg_database
from tests.support.samples import (
    SAMPLE_NAMES,
    SAMPLES_DIR,
    Sample,
    normalise,
    record_scenario,
    render,
    sample_path,
    served,
)

JWT = re.compile(r"eyJ[A-Za-z0-9_-]{10,}\.")


def _stored(name: str) -> Sample:
    document = json.loads(sample_path(name).read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def test_the_folder_holds_the_eight_samples_as_recorded() -> None:
    """Exactly the contract's eight files, each in the script's rendering (so it was
    written by it, not edited by hand), each one exchange, none holding a token."""
    assert sorted(p.stem for p in SAMPLES_DIR.glob("orchestrator-*.json")) == sorted(SAMPLE_NAMES)
    for name in SAMPLE_NAMES:
        text = sample_path(name).read_text(encoding="utf-8")
        document = _stored(name)
        assert render(document) == text, name
        assert set(document) == {"description", "request", "response"}, name
        assert set(document["response"]) == {"status", "headers", "body"}, name
        assert document["request"]["headers"]["X-Stella-Tenant"] == "acme", name
        assert document["request"]["headers"]["Authorization"].startswith(
            "Bearer <access token: "
        ), name
        assert JWT.search(text) is None, name


def test_normalise_replaces_generated_values_consistently() -> None:
    entry, job = "4ac15323-75db-4364-b2a0-5cccb753eb59", "40e74265-6d86-4cb7-b361-28ed8588698b"
    sample: Sample = {
        "description": "d",
        "request": {"method": "POST", "path": f"/jobengine/deadletter/{entry}/replay"},
        "response": {
            "status": 200,
            "headers": {"ETag": '"abc"', "X-Stella-Trace-Id": "9d73", "Cache-Control": "no-store"},
            "body": {
                "results": [{"entryId": entry, "jobId": job, "outcome": "replayed"}],
                "tenantId": "acme",
                "retryOf": job,
                "createdAt": "2026-11-30T12:22:12.100443Z",
                "oldestPendingAge": "59s",
                "continuationToken": "opaque",
                "fingerprint": "a1f7ee3f1f105ee3",
            },
        },
    }
    assert normalise(sample) == {
        "description": "d",
        "request": {"method": "POST", "path": "/jobengine/deadletter/<id:1>/replay"},
        "response": {
            "status": 200,
            "headers": {
                "ETag": "<etag>",
                "X-Stella-Trace-Id": "<trace-id>",
                "Cache-Control": "no-store",
            },
            "body": {
                "results": [{"entryId": "<id:1>", "jobId": "<id:2>", "outcome": "replayed"}],
                "tenantId": "acme",
                "retryOf": "<id:2>",
                "createdAt": "<time>",
                "oldestPendingAge": "<duration>",
                "continuationToken": "<continuation-token>",
                "fingerprint": "a1f7ee3f1f105ee3",
            },
        },
    }


@pytest.mark.parametrize("backend", BACKENDS)
async def test_samples_match_what_the_running_server_answers(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    database_name, database_url = (
        await _create_pg_database() if backend == "postgres" else (None, None)
    )
    try:
        with served(database_url, directory=tmp_path_factory.mktemp("samples")) as server:
            live = await record_scenario(server)
    finally:
        if database_name is not None:
            await _drop_pg_database(database_name)
    assert sorted(live) == sorted(SAMPLE_NAMES)
    differences = []
    for name in SAMPLE_NAMES:
        expected = render(normalise(_stored(name))).splitlines()
        answered = render(normalise(live[name])).splitlines()
        if expected != answered:
            diff = difflib.unified_diff(expected, answered, f"{name}.json", "server", lineterm="")
            differences.append("\n".join(diff))
    assert not differences, "samples differ from the server (make samples):\n" + "\n".join(
        differences
    )

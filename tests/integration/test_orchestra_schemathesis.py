"""Schemathesis with the seed's own OpenAPI document (seed 004, the Orchestra cross-site
API; issue 11 point 4) against the running server over real HTTP: every response
conforms to the document and every operation of the document is exercised.

The document is read as it is from `../shared/seeds/004_*.txt` beside the checkout
(never a copy: a copy could be edited to pass). Its only server is a template
(`{orchestra_base_url}`), so the run names the test server's base URL. The resource
operations carry a real access token from the server's token endpoint, of a client
bound to the test's tenant whose role holds `access orchestra api`; the token
operation gets that client's id and secret in positive cases
(tests/integration/orchestra_schemathesis_hooks.py, which also brings positive cases
within the rules the document states in prose: a definition, instance or parked
token that exists, variable names the product accepts).

Checks: all of schemathesis's (`--checks all`: response schema, status code,
content type and headers conformance, positive and negative data, authentication
not ignored, ...) plus the two of tests/integration/schemathesis_hooks.py (error
texts in the product's words; a success from every operation). Positive data
acceptance also takes 422: the seed's `Unprocessable` answer is for a well-formed
request that names what does not exist (an unknown definition, a token that is not
parked), the role 404 plays for the check's defaults. The token operation's status codes are
checked against RFC 6749 §5.2 instead of the seed's two (the hooks module says why).

The set of operations exercised (read from the run's NDJSON event stream: those
with at least one request sent) must be the document's, all seven.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import yaml

from server.app import Application
from server.identity.scopes import ORCHESTRA_PERMISSION
from tests.integration import orchestra_schemathesis_hooks as hooks
from tests.integration import schemathesis_hooks
from tests.support.auth import TokenFactory
from tests.support.orchestra import load_definition

REPO = Path(__file__).resolve().parents[2]
SEEDS = REPO.parent / "shared" / "seeds"
PHASES = ("examples", "coverage", "fuzzing")
SEED = 20261130
TIMEOUT = 900  # seconds (the other schemathesis run took up to 235 s on the 2-core box)
FUZZ_EXAMPLES = 25  # per operation in the fuzzing phase
CONFIG = f"""\
[phases.examples]
fill-missing = true

[phases.fuzzing.generation]
max-examples = {FUZZ_EXAMPLES}

[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]

[[operations]]
include-operation-id = "token"
checks.status_code_conformance.enabled = false
"""
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options", "trace"})


def seed_document() -> tuple[Path, dict[str, Any]]:
    """The one seed 004 file and its parsed document."""
    [path] = sorted(SEEDS.glob("004_*.txt"))
    document = yaml.safe_load(path.read_text())
    assert document["openapi"].startswith("3.1"), path
    return path, document


def operations_of(document: dict[str, Any]) -> set[str]:
    """`METHOD /path` of every operation in `document`."""
    return {
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def exercised(events: Path) -> set[str]:
    """Labels (`METHOD /path`) of the operations whose scenarios sent at least one
    request, from schemathesis's NDJSON event stream (`ScenarioFinished` events carry
    the scenario's recorder: its operation label and its request/response pairs)."""
    labels: set[str] = set()
    for line in events.read_text().splitlines():
        finished = json.loads(line).get("ScenarioFinished")
        if finished is None:
            continue
        recorder = finished.get("recorder") or {}
        if recorder.get("interactions"):
            labels.add(str(recorder["label"]))
    return labels


async def test_the_server_answers_as_the_seed_document_says(
    app: Application,
    http: httpx.AsyncClient,
    http_base: str,
    tenant: str,
    tokens: TokenFactory,
    tmp_path: Path,
) -> None:
    seed_path, document = seed_document()
    operations = operations_of(document)
    assert len(operations) == 7, operations

    definition_id = f"st_{uuid.uuid4().hex[:8]}"
    await load_definition(
        app,
        {
            "id": definition_id,
            "nodes": [
                {"id": "start", "type": "start"},
                {"id": "review", "type": "user_task"},
                {"id": "done", "type": "end"},
            ],
            "flows": [{"from": "start", "to": "review"}, {"from": "review", "to": "done"}],
        },
    )
    client = await tokens.client(tenant, permissions=[ORCHESTRA_PERMISSION])
    token = await tokens.token(tenant, permissions=[ORCHESTRA_PERMISSION])
    started = await http.post(
        f"/orchestra-api/process/{definition_id}/start",
        json={"variables": {"held": True}},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert started.status_code == 201, started.text
    instance_id = started.json()["instance_id"]

    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    events = tmp_path / "events.ndjson"
    command = [
        *(sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color"),
        *("run", str(seed_path), "--url", http_base),
        *("--phases", ",".join(PHASES), "--seed", str(SEED)),
        *("--generation-database", "none", "--header", f"Authorization: Bearer {token}"),
        *("--report", "ndjson", "--report-ndjson-path", str(events)),
    ]
    environment = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "SCHEMATHESIS_HOOKS": hooks.__name__,
        schemathesis_hooks.CLIENT_ID_VARIABLE: client.client.client_id,
        schemathesis_hooks.CLIENT_SECRET_VARIABLE: client.client_secret,
        schemathesis_hooks.TOKEN_VARIABLE: token,
        schemathesis_hooks.BASE_URL_VARIABLE: http_base,
        hooks.DEFINITION_VARIABLE: definition_id,
        hooks.INSTANCE_VARIABLE: instance_id,
    }
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=tmp_path,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), TIMEOUT)
    finally:
        if process.returncode is None:
            process.kill()
    report = output.decode(errors="replace").replace(token, "<token>")
    report = report.replace(client.client_secret, "<secret>")

    assert process.returncode == 0, report
    assert f"Selected: {len(operations)}/{len(operations)}" in report, report
    assert f"Tested: {len(operations)}" in report, report
    for phase in PHASES:
        assert re.search(rf"✅ {phase.capitalize()}\b", report), report
    assert "failures" not in report.split("SUMMARY")[-1], report
    assert exercised(events) == operations, report

"""Schemathesis against the running server with its own `/openapi.json`: every check
(`--checks all`) in every phase (examples, coverage, fuzzing, stateful), over every
operation of the document (canonical `/jobengine` paths, their deprecated
`/orchestrator` twins and the OAuth endpoints), with zero failures.

The tool is run as its users run it, `schemathesis run` in a process of its own,
against the session's server over real HTTP (the server runs on this test's event
loop, so the test awaits the process instead of blocking). The resource operations
get a valid access token of a client bound to the test's tenant (so X-Stella-Tenant
is optional, as the document says); tests/integration/schemathesis_hooks.py gives
the OAuth endpoints that client's credentials, keeps positive cases within the
rules JSON Schema cannot state, and adds two checks: error texts in the product's
words (never protobuf's or Python's) and a success from every operation.

The run is bounded by a fixed seed and the examples per operation: the coverage
phase enumerates what the schema defines (~18 s), the fuzzing phase adds
FUZZ_EXAMPLES random cases per operation (~13 s), and the stateful phase follows the
document's links (a created resource's id into the operations on it; gateway/
openapi.py) for at most SCENARIOS scenarios, which Hypothesis ends sooner when it
finds nothing new (~2 s). About 40 s per database on 2 cores.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import httpx

from server.identity.scopes import JUSTIFIED, SCOPES
from tests.integration import schemathesis_hooks
from tests.support.auth import TokenFactory

REPO = Path(__file__).resolve().parents[2]
PHASES = ("examples", "coverage", "fuzzing", "stateful")
SEED = 20261130
TIMEOUT = 240  # seconds; the run takes ~40 s on 2 cores
SCENARIOS = 100  # at most, in the stateful phase (which reads the run's max-examples)
FUZZ_EXAMPLES = 15  # per operation in the fuzzing phase
SEEDED_PREFIX = "/orchestra-api/"  # covered with the seed's document (see the test)
# One schemathesis.toml for the run. Without examples in the document the examples
# phase would be skipped: fill it in.
CONFIG = f"""\
[generation]
max-examples = {SCENARIOS}

[phases.examples]
fill-missing = true

[phases.fuzzing.generation]
max-examples = {FUZZ_EXAMPLES}
"""


async def test_the_server_answers_as_its_document_says(
    http: httpx.AsyncClient,
    http_base: str,
    tenant: str,
    tokens: TokenFactory,
    tmp_path: Path,
) -> None:
    document = (await http.get("/openapi.json")).json()
    # /orchestra-api/ is seed 004's: tests/integration/test_orchestra_schemathesis.py runs
    # schemathesis with the seed's own document there (the literal contract, its rules and a
    # client holding `access orchestra api`); this run covers the rest of this document.
    total = sum(
        1 for item in document["paths"].values() for method in item if method != "parameters"
    )
    operations = sum(
        1
        for path, item in document["paths"].items()
        if not path.startswith(SEEDED_PREFIX)
        for method in item
        if method != "parameters"
    )
    paths = set(document["paths"])
    assert {"/jobengine/sources", "/orchestrator/sources", "/oauth/token"} <= paths
    assert {"/oauth/introspect", "/oauth/revoke", "/jobengine/audit"} <= paths

    # Every scope the document advertises, the justified ones with their reasons.
    justified = {j.reason_field: "schemathesis run" for j in JUSTIFIED}
    client = await tokens.client(tenant, SCOPES)
    token = await tokens.token(tenant, SCOPES, **justified)
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [
        *(sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color"),
        *("run", f"{http_base}/openapi.json", "--checks", "all", "--phases", ",".join(PHASES)),
        *("--seed", str(SEED), "--exclude-path-regex", f"^{SEEDED_PREFIX}"),
        *("--generation-database", "none", "--header", f"Authorization: Bearer {token}"),
    ]
    environment = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "SCHEMATHESIS_HOOKS": schemathesis_hooks.__name__,
        schemathesis_hooks.CLIENT_ID_VARIABLE: client.client.client_id,
        schemathesis_hooks.CLIENT_SECRET_VARIABLE: client.client_secret,
        schemathesis_hooks.TOKEN_VARIABLE: token,
        schemathesis_hooks.BASE_URL_VARIABLE: http_base,
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

    assert process.returncode == 0, report
    assert f"Selected: {operations}/{total}" in report, report
    assert f"Tested: {operations}" in report, report
    for phase in PHASES:  # each ran and passed; a skipped phase is marked otherwise
        assert re.search(rf"✅ {phase.capitalize()}\b", report), report
    assert re.search(r"\d+ generated, (\d+) passed", report), report
    assert "failures" not in report.split("SUMMARY")[-1], report

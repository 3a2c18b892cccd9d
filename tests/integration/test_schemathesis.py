"""Schemathesis against the running server with its own `/openapi.json`: every check
(`--checks all`) in every phase (examples, coverage, fuzzing, stateful), over every
operation of the document (canonical `/jobengine` paths, their deprecated
`/orchestrator` twins and the OAuth endpoints), with zero failures.

The tool is run as its users run it, `schemathesis run` in a process of its own,
against the session's server over real HTTP (the server runs on this test's event
loop, so the test awaits the process instead of blocking). The resource operations
get a valid access token of a client bound to the test's tenant (so X-Stella-Tenant
is optional, as the document says), through the hooks' auth providers;
tests/integration/schemathesis_hooks.py gives
the OAuth endpoints that client's credentials, keeps positive cases within the
rules JSON Schema cannot state, and adds two checks: error texts in the product's
words (never protobuf's or Python's) and a success from every operation.

The run is bounded by a fixed seed and the examples per operation: the coverage
phase enumerates what the schema defines (~18 s), the fuzzing phase adds
FUZZ_EXAMPLES random cases per operation (~13 s), and the stateful phase follows the
document's links (a created resource's id into the operations on it; gateway/
openapi.py) for at most SCENARIOS scenarios, which Hypothesis ends sooner when it
finds nothing new (~2 s). About 40 s per database on 2 cores.

Platform-level operations (policy TENANT_MODE_PLATFORM: the platform's configuration,
health, registry and peers) serve operator clients only; the hooks
give their cases the token of an operator client bound to no tenant, chosen per
operation from the methods' policies (schemathesis_hooks.platform_operations).

For a narrower run while working, ORCHESTRATOR_ST_PATHS (a regular expression over
the document's paths) selects the operations to run; the full run is the default.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import httpx

from clients.base import CallerHeaders
from clients.jobs import JobsClient, new_job
from clients.sources import SourcesClient
from clients.transports.grpc import GrpcTransport
from orchestrator.jobengine.v1 import worker_service_pb2
from server.app import Application
from server.identity.scopes import JUSTIFIED, SCOPES
from tests.integration import schemathesis_hooks
from tests.integration.test_workers import WorkerCalls
from tests.support.auth import TokenFactory
from tests.support.orchestra import start_saga

REPO = Path(__file__).resolve().parents[2]
PHASES = ("examples", "coverage", "fuzzing", "stateful")
SEED = 20261130
TIMEOUT = 900  # seconds; the run took 221-235 s on the 2-core box on 2026-12-01
SCENARIOS = 100  # at most, in the stateful phase (which reads the run's max-examples)
FUZZ_EXAMPLES = 15  # per operation in the fuzzing phase
SEEDED_PREFIX = "/orchestra-api/"  # covered with the seed's document (see the test)
PATHS_VARIABLE = "ORCHESTRATOR_ST_PATHS"  # a path regex narrowing the run (test-only option)
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


def positive_only(document: dict[str, object]) -> str:
    """Operations that take no input at all (no parameter, no body) but credentials:
    a negative case has nothing to get wrong but the credentials, which the hooks' auth
    providers supply (the authentication checks probe those), so Hypothesis would only
    filter its draws out (health check filter_too_much). Their cases are positive."""
    paths = document["paths"]
    assert isinstance(paths, dict)
    names = sorted(
        operation["operationId"]
        for item in paths.values()
        for method, operation in item.items()
        if method != "parameters"
        and not operation.get("parameters")
        and "requestBody" not in operation
        and operation.get("security")
    )
    listed = ", ".join(f'"{name}"' for name in names)
    return f'\n[[operations]]\ninclude-operation-id = [{listed}]\ngeneration.mode = "positive"\n'


DEAD_LETTERS = 5  # jobs failed for good before the run, for the dead-letter replays


async def dead_letter(grpc_target: str, tenant: str, token: str, count: int) -> None:
    """`count` jobs of the tenant enqueued with one attempt, leased by a worker over gRPC
    and failed: dead-lettered, so replaying one entry can succeed (no operation of
    the document makes a dead letter)."""
    transport = GrpcTransport(grpc_target)
    headers = CallerHeaders(tenant=tenant, access_token=token, operator_reason="schemathesis")
    try:
        source = await SourcesClient(transport, headers).register_source("failing", "manual")
        jobs, workers = JobsClient(transport, headers), WorkerCalls(transport, headers)
        for _ in range(count):
            await jobs.enqueue_job(new_job("st.failing", source.source_id, max_attempts=1))
        leases = await workers.lease(["st.failing"], max_jobs=count)
        assert len(leases) == count
        failures = [
            worker_service_pb2.JobFailure(
                token=lease.token, category="timeout", code="DEADLINE", message="timed out"
            )
            for lease in leases
        ]
        outcomes = await workers.fail(*failures)
        assert {outcome.job_status for outcome in outcomes} == {"dead_lettered"}
    finally:
        await transport.close()


async def test_the_server_answers_as_its_document_says(
    app: Application,
    http: httpx.AsyncClient,
    http_base: str,
    grpc_target: str,
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
    only = os.environ.get(PATHS_VARIABLE)
    operations = sum(
        1
        for path, item in document["paths"].items()
        if not path.startswith(SEEDED_PREFIX) and (not only or re.search(only, path))
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
    # An operator client of the tenant, bound to none, for the platform-level operations.
    operator = await tokens.token(None, SCOPES, tenants=(tenant,), **justified)
    await dead_letter(grpc_target, tenant, token, DEAD_LETTERS)
    saga_id = await start_saga(app, tenant)  # GET /infrastructure/saga/{sagaId} reads it
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG + positive_only(document))
    command = [
        *(sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color"),
        *("run", f"{http_base}/openapi.json", "--checks", "all", "--phases", ",".join(PHASES)),
        *("--seed", str(SEED), "--exclude-path-regex", f"^{SEEDED_PREFIX}"),
        *("--generation-database", "none"),
        *(("--include-path-regex", only) if only else ()),
    ]
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join((str(REPO), str(REPO / "gen"))),
        "SCHEMATHESIS_HOOKS": schemathesis_hooks.__name__,
        schemathesis_hooks.CLIENT_ID_VARIABLE: client.client.client_id,
        schemathesis_hooks.CLIENT_SECRET_VARIABLE: client.client_secret,
        schemathesis_hooks.TOKEN_VARIABLE: token,
        schemathesis_hooks.OPERATOR_TOKEN_VARIABLE: operator,
        schemathesis_hooks.BASE_URL_VARIABLE: http_base,
        schemathesis_hooks.SAGA_ID_VARIABLE: saga_id,
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
    report = report.replace(operator, "<operator token>")

    assert process.returncode == 0, report
    assert f"Selected: {operations}/{total}" in report, report
    assert f"Tested: {operations}" in report, report
    for phase in PHASES:  # each ran and passed; a skipped phase is marked otherwise
        assert re.search(rf"✅ {phase.capitalize()}\b", report), report
    assert re.search(r"\d+ generated, (\d+) passed", report), report
    assert "failures" not in report.split("SUMMARY")[-1], report

"""The JobEngine gateway samples (DESIGN.md §4.1): one scenario, driven through the
public API of a running `orchestrator serve`, whose answers are the sample files in
`docs/api/gateway/samples/`. `scripts/record_samples.py` writes them and
`tests/integration/test_samples.py` checks them; both run `record_scenario` here.

The scenario, on a fresh database (SQLite by default, or the PostgreSQL database given):

1. the CLI creates tenant `acme` and two clients bound to it: `acme-ops` (orch:read,
   orch:operate, orch:quota, orch:backfill) and `acme-worker` (orch:operate);
2. the server starts on free loopback ports; tokens come from `POST /oauth/token`
   (client credentials; the orch:quota token with `quota_reason`/`quota_ticket`, the
   orch:backfill token with `backfill_reason`/`backfill_ticket`, DESIGN.md §4.2);
3. three sources are registered (`image-uploads`, `partner-feed`, `nightly-reports`)
   and `partner-feed` is paused; two quotas are created (`thumbnail.render`: bucket off,
   `report.export`: a bucket never drawn from) and `report.export`'s is paused;
4. six `thumbnail.render` jobs (one attempt each) are failed for good by a worker of
   the worker SDK (`clients/worker/`, over gRPC) in three error clusters, so they are
   dead-lettered; a pack run `catalog-refresh` (render → validate → publish) runs
   with the same worker: `render` succeeds, `validate` fails for good (one more entry),
   `publish` is skipped and the run fails; the worker then drains and stops;
5. a pack run `nightly-archive` (fetch → index → publish) of a job type no worker
   takes waits with its first job queued;
6. then the eight exchanges are recorded, in this order: sources, quotas, quota
   summary, dead-letter stats, dead-letter summary, the replay of the newest timeout
   entry, the cancel of `nightly-archive` and the retry of `catalog-refresh`.

Everything the scenario sends is fixed, so the answers differ between two runs only
in what the server generates. `normalise` replaces exactly that, the same way in a
sample file and in a live answer, before they are compared:

- identifiers: a string under a key ending in `Id` (`sourceId`, `jobId`, `entryId`,
  `packRunId`, `quotaId`, `replayJobId`, ...; not `tenantId`) or under `retryOf`,
  `retriedBy` or `replayOf` becomes `<id:N>`, N numbering distinct values in order of
  first appearance (keys walked in sorted order, request before response); every other
  string that contains such a value (the request path) gets the same placeholder, so
  "the entry replayed is the one in the path" is still checked;
- times: every RFC 3339 timestamp becomes `<time>`; `oldestPendingAge` (a duration
  that grows while the entry waits) becomes `<duration>`;
- `ETag` and `X-Stella-Trace-Id` response headers become `<etag>` and `<trace-id>`
  (an ETag hashes the body, whose ids and times differ; the trace id is generated);
- `continuationToken` becomes `<continuation-token>` (signed with the server's secret);
- tokens never appear: `Authorization` is written as a placeholder naming the scope.

Fingerprints, counts, statuses, messages, ordering and the caching headers are
compared as they are.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from clients.auth import ClientCredentials
from clients.worker import JobFailed, LeasedJob, Worker
from tests.support.fleet import Server
from tests.support.process import ORCHESTRATOR, base_env

REPO = Path(__file__).parents[2]
SAMPLES_DIR = REPO / "docs" / "api" / "gateway" / "samples"
SAMPLE_NAMES: tuple[str, ...] = (
    "orchestrator-sources",
    "orchestrator-quotas",
    "orchestrator-quota-summary",
    "orchestrator-deadletter-stats",
    "orchestrator-deadletter-summary",
    "orchestrator-deadletter-replay",
    "orchestrator-packrun-cancel",
    "orchestrator-packrun-retry",
)
TENANT = "acme"
OPS_CLIENT = "acme-ops"
WORKER_CLIENT = "acme-worker"
RENDER = "thumbnail.render"  # the job type the scenario's worker takes
ARCHIVE = "archive.fetch"  # a job type no worker takes: its jobs stay queued
REASON = "recording the API samples"
TICKET = "DOC-42"
RECORDED_RESPONSE_HEADERS = (
    "Cache-Control",
    "Content-Type",
    "Deprecation",
    "ETag",
    "Link",
    "X-Stella-Trace-Id",
)
SETTLE_SECONDS = 60.0

Json = Any
Sample = dict[str, Json]


# --- normalisation ------------------------------------------------------------------

_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
_ID_KEYS = frozenset({"retryOf", "retriedBy", "replayOf"})
_NOT_IDS = frozenset({"tenantId"})
_FIXED = {
    "oldestPendingAge": "<duration>",
    "continuationToken": "<continuation-token>",
    "ETag": "<etag>",
    "X-Stella-Trace-Id": "<trace-id>",
}


def _is_id_key(key: str) -> bool:
    return key in _ID_KEYS or (key.endswith("Id") and key not in _NOT_IDS)


def normalise(sample: Sample) -> Sample:
    """The sample with what the server generates replaced by placeholders (see the
    module docstring); the input is not changed."""
    ids: dict[str, str] = {}

    def collect(value: Json) -> None:
        if isinstance(value, dict):
            for key in sorted(value):
                item = value[key]
                if _is_id_key(key) and isinstance(item, str) and item:
                    ids.setdefault(item, f"<id:{len(ids) + 1}>")
                collect(item)
        elif isinstance(value, list):
            for item in value:
                collect(item)

    def replace(value: Json, key: str | None = None) -> Json:
        if isinstance(value, dict):
            return {k: replace(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [replace(item) for item in value]
        if not isinstance(value, str):
            return value
        if key in _FIXED:
            return _FIXED[key]
        if value in ids:
            return ids[value]
        if _TIME.match(value):
            return "<time>"
        for found, placeholder in ids.items():
            value = value.replace(found, placeholder)
        return value

    collect(sample.get("request"))
    collect(sample.get("response"))
    normalised = replace(sample)
    assert isinstance(normalised, dict)
    return normalised


def render(sample: Sample) -> str:
    """The file text: two-space indented JSON, keys sorted, a final newline."""
    return json.dumps(sample, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def sample_path(name: str, directory: Path = SAMPLES_DIR) -> Path:
    return directory / f"{name}.json"


# --- the server -----------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    client_id: str
    client_secret: str


@dataclass
class Served:
    """A running server with the scenario's tenant and clients."""

    server: Server
    ops: Credentials
    worker: Credentials

    @property
    def base(self) -> str:
        return self.server.served.base

    @property
    def grpc_target(self) -> str:
        return self.server.grpc_target

    @property
    def token_url(self) -> str:
        return self.server.token_url


def _cli(env: Mapping[str, str], cwd: Path, *args: str) -> str:
    done = subprocess.run(
        [ORCHESTRATOR, *args],
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"orchestrator {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def _client(env: Mapping[str, str], cwd: Path, client_id: str, *scopes: str) -> Credentials:
    scope_args = [arg for scope in scopes for arg in ("--scope", scope)]
    output = _cli(
        env,
        cwd,
        "clients",
        "create",
        "--tenant",
        TENANT,
        *scope_args,
        "--client-id",
        client_id,
        "--name",
        client_id,
        "--json",
    )
    created = json.loads(output)
    return Credentials(created["client_id"], created["client_secret"])


@contextmanager
def served(database_url: str | None = None, *, directory: Path | None = None) -> Iterator[Served]:
    """`orchestrator serve` on a fresh database: a SQLite file in `directory` (a
    temporary one by default) unless `database_url` names another (which must be
    empty), with the scenario's tenant and clients created by the CLI first."""
    with tempfile.TemporaryDirectory(prefix="samples-") as scratch:
        cwd = directory or Path(scratch)
        (cwd / "var").mkdir(parents=True, exist_ok=True)
        overrides: dict[str, str] = {}
        if database_url is not None:
            overrides["ORCHESTRATOR_DATABASE_URL"] = database_url
        env = base_env(cwd, **overrides)
        _cli(env, cwd, "tenants", "create", TENANT, "--name", "Acme Corp")
        ops = _client(
            env, cwd, OPS_CLIENT, "orch:read", "orch:operate", "orch:quota", "orch:backfill"
        )
        worker = _client(env, cwd, WORKER_CLIENT, "orch:operate")
        server = Server(env, cwd, dev=False)
        try:
            yield Served(server, ops, worker)
        finally:
            server.stop()


# --- the scenario ---------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """A bearer token and how a sample names it (never the token itself)."""

    token: str
    shown_as: str


async def _token(http: httpx.AsyncClient, ops: Credentials, scope: str, **form: str) -> Caller:
    response = await http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": scope, **form},
        auth=(ops.client_id, ops.client_secret),
    )
    if response.status_code != 200:
        raise RuntimeError(f"token for {scope!r}: {response.status_code} {response.text}")
    extra = "".join(f", {name}" for name in form)
    return Caller(str(response.json()["access_token"]), f"Bearer <access token: {scope}{extra}>")


class Scenario:
    """The calls of the scenario; `exchange` records one as a sample."""

    def __init__(self, http: httpx.AsyncClient, operate: Caller) -> None:
        self.http = http
        self.operate = operate

    async def call(
        self,
        method: str,
        path: str,
        caller: Caller,
        body: Json = None,
        *,
        reason: bool = False,
        expect: int = 200,
    ) -> httpx.Response:
        response = await self.http.request(
            method, path, headers=self._headers(caller, reason, shown=False), json=body
        )
        if response.status_code != expect:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text}")
        return response

    async def exchange(
        self,
        description: str,
        method: str,
        path: str,
        caller: Caller,
        body: Json = None,
        *,
        reason: bool = False,
        expect: int = 200,
    ) -> Sample:
        response = await self.call(method, path, caller, body, reason=reason, expect=expect)
        request: dict[str, Json] = {
            "method": method,
            "path": path,
            "headers": self._headers(caller, reason, shown=True),
        }
        if body is not None:
            request["headers"]["Content-Type"] = "application/json"
            request["body"] = body
        headers = {
            name: response.headers[name]
            for name in RECORDED_RESPONSE_HEADERS
            if name in response.headers
        }
        return {
            "description": description,
            "request": request,
            "response": {
                "status": response.status_code,
                "headers": headers,
                "body": response.json(),
            },
        }

    def _headers(self, caller: Caller, reason: bool, *, shown: bool) -> dict[str, str]:
        headers = {
            "Authorization": caller.shown_as if shown else f"Bearer {caller.token}",
            "X-Stella-Tenant": TENANT,
        }
        if reason:
            headers["X-Stella-Operator-Reason"] = REASON
            headers["X-Stella-Operator-Ticket"] = TICKET
        return headers

    async def create(self, path: str, body: Json, caller: Caller | None = None) -> Json:
        response = await self.call(
            "POST", path, caller or self.operate, body, reason=True, expect=201
        )
        return response.json()

    async def until(
        self, path: str, done: Callable[[Json], bool], caller: Caller | None = None
    ) -> Json:
        """GET `path` until `done(body)`; RuntimeError after SETTLE_SECONDS."""
        deadline = time.monotonic() + SETTLE_SECONDS
        while True:
            body = (await self.call("GET", path, caller or self.operate)).json()
            if done(body):
                return body
            if time.monotonic() > deadline:
                raise RuntimeError(f"GET {path} did not settle: {json.dumps(body)}")
            await asyncio.sleep(0.2)


# Dead-letter failures: (payload image, category, code, message, retryable). Three
# timeouts cluster together (numbers and host ids are masked in the fingerprint).
FAILURES: tuple[tuple[str, str, str, str, bool], ...] = (
    ("cat-001.png", "timeout", "DEADLINE", "timeout after 3012 ms on host-7", True),
    ("cat-002.png", "timeout", "DEADLINE", "timeout after 2977 ms on host-2", True),
    ("cat-003.png", "timeout", "DEADLINE", "timeout after 3140 ms on host-4", True),
    ("scan-17.tiff", "validation", "UNSUPPORTED_FORMAT", "unsupported image format 'tiff'", False),
    ("scan-18.tiff", "validation", "UNSUPPORTED_FORMAT", "unsupported image format 'tiff'", False),
    ("dog-7.png", "dependency", "HTTP_503", "object store answered 503 Service Unavailable", True),
)


async def _handler(job: LeasedJob) -> object:
    """Fails a job whose payload has `fail` as it says; otherwise renders it."""
    payload = job.payload if isinstance(job.payload, dict) else {}
    fail = payload.get("fail")
    if isinstance(fail, dict):
        raise JobFailed(
            str(fail["category"]),
            str(fail["code"]),
            str(fail["message"]),
            retryable=bool(fail["retryable"]),
        )
    return {"thumbnail": f"{payload.get('image', 'image')}.thumb.png"}


def _failing(image: str, category: str, code: str, message: str, retryable: bool) -> Json:
    return {
        "image": image,
        "fail": {"category": category, "code": code, "message": message, "retryable": retryable},
    }


async def _with_worker(served: Served, work: Callable[[], Awaitable[None]]) -> None:
    """Run `work` while a worker of the SDK takes RENDER jobs; then drain it."""
    worker = Worker.connect(
        served.grpc_target,
        job_types=[RENDER],
        handler=_handler,
        credentials=ClientCredentials(
            served.token_url,
            served.worker.client_id,
            served.worker.client_secret,
            scopes=["orch:operate"],
        ),
        concurrency=4,
        lease_duration=10.0,
        wait_timeout=1.0,
        grace_period=5.0,
        worker_id="samples-worker",
    )
    running = asyncio.create_task(worker.run())
    try:
        await work()
    finally:
        worker.drain()
        await asyncio.wait_for(running, timeout=30)


async def record_scenario(served: Served) -> dict[str, Sample]:
    """Run the scenario against `served` and return the eight samples by name."""
    async with httpx.AsyncClient(base_url=served.base, timeout=30) as http:
        operate = await _token(http, served.ops, "orch:read orch:operate")
        quota = await _token(
            http, served.ops, "orch:quota", quota_reason=REASON, quota_ticket=TICKET
        )
        backfill = await _token(
            http, served.ops, "orch:backfill", backfill_reason=REASON, backfill_ticket=TICKET
        )
        s = Scenario(http, operate)

        uploads = await s.create(
            "/jobengine/sources", {"name": "image-uploads", "sourceType": "manual"}
        )
        partner = await s.create(
            "/jobengine/sources", {"name": "partner-feed", "sourceType": "webhook"}
        )
        await s.create("/jobengine/sources", {"name": "nightly-reports", "sourceType": "manual"})
        await s.call(
            "POST", f"/jobengine/sources/{partner['sourceId']}/pause", operate, {}, reason=True
        )
        source_id = uploads["sourceId"]

        await s.create(
            "/jobengine/quotas",
            {"jobType": RENDER, "maxActive": 8, "maxPerHour": 5000, "burst": 20},
            quota,
        )
        export = await s.create(
            "/jobengine/quotas",
            {
                "jobType": "report.export",
                "maxActive": 2,
                "maxPerHour": 120,
                "burst": 5,
                "refillPerSecond": 0.5,
            },
            quota,
        )
        await s.call(
            "POST",
            f"/jobengine/quotas/{export['quotaId']}/pause",
            quota,
            {"reason": "warehouse maintenance until 06:00 UTC"},
            reason=True,
        )

        async def dead_letters_and_a_failed_run() -> None:
            # One at a time, so that each cluster's sample message (its latest) and
            # the entries' order do not depend on how the worker batches its reports.
            for count, failure in enumerate(FAILURES, start=1):
                await s.create(
                    "/jobengine/jobs",
                    {
                        "jobType": RENDER,
                        "sourceId": source_id,
                        "maxAttempts": 1,
                        "payload": _failing(*failure),
                    },
                )
                await s.until("/jobengine/deadletter/stats", _dead_lettered(count))
            created = await s.create(
                "/jobengine/pack-runs",
                {
                    "packName": "catalog-refresh",
                    "jobs": [
                        {"name": "render", "jobType": RENDER, "sourceId": source_id,
                         "payload": {"image": "catalog.png"}},
                        {"name": "validate", "jobType": RENDER, "sourceId": source_id,
                         "maxAttempts": 1, "dependsOn": ["render"],
                         "payload": _failing("catalog.png", "validation", "SCHEMA_MISMATCH",
                                             "catalog row 17 has no price", False)},
                        {"name": "publish", "jobType": RENDER, "sourceId": source_id,
                         "dependsOn": ["validate"], "payload": {"image": "catalog.png"}},
                    ],
                },
            )  # fmt: skip
            run_id = created["packRunId"]
            await s.until(f"/jobengine/pack-runs/{run_id}", lambda b: _status(b) == "failed")

        await _with_worker(served, dead_letters_and_a_failed_run)
        failed_run = (
            await s.call("GET", "/jobengine/pack-runs?packName=catalog-refresh", operate)
        ).json()["items"][0]["packRunId"]

        archive = await s.create(
            "/jobengine/pack-runs",
            {
                "packName": "nightly-archive",
                "jobs": [
                    {"name": "fetch", "jobType": ARCHIVE, "sourceId": source_id},
                    {"name": "index", "jobType": ARCHIVE, "sourceId": source_id,
                     "dependsOn": ["fetch"]},
                    {"name": "publish", "jobType": ARCHIVE, "sourceId": source_id,
                     "dependsOn": ["index"]},
                ],
            },
        )  # fmt: skip
        timeouts = (await s.call("GET", "/jobengine/deadletter?category=timeout", operate)).json()[
            "items"
        ]

        samples: dict[str, Sample] = {}
        samples["orchestrator-sources"] = await s.exchange(
            "The tenant's sources, ordered by (name, sourceId); `partner-feed` is paused.",
            "GET",
            "/jobengine/sources",
            operate,
        )
        samples["orchestrator-quotas"] = await s.exchange(
            "The tenant's quotas, ordered by (jobType, quotaId), with their usage: eight "
            f"`{RENDER}` leases in the last hour; `report.export` is paused.",
            "GET",
            "/jobengine/quotas",
            quota,
        )
        samples["orchestrator-quota-summary"] = await s.exchange(
            "Each quota's use of its limits and whether it holds work back now, with totals.",
            "GET",
            "/jobengine/quotas/summary",
            quota,
        )
        samples["orchestrator-deadletter-stats"] = await s.exchange(
            "Dead-letter totals, the oldest pending entry, counts per category and the "
            "largest error clusters (the three timeouts share one fingerprint).",
            "GET",
            "/jobengine/deadletter/stats",
            operate,
        )
        samples["orchestrator-deadletter-summary"] = await s.exchange(
            "Dead-letter entries grouped by (category, errorCode), in that order, with totals.",
            "GET",
            "/jobengine/deadletter/summary",
            operate,
        )
        samples["orchestrator-deadletter-replay"] = await s.exchange(
            "Replay of one pending entry: a clone of its job is enqueued (its replayOf "
            "names the dead-lettered job) and the entry becomes `replayed`.",
            "POST",
            f"/jobengine/deadletter/{timeouts[0]['entryId']}/replay",
            backfill,
            {},
            reason=True,
        )
        samples["orchestrator-packrun-cancel"] = await s.exchange(
            "Cancel of a running pack run: its queued first job is canceled, the two "
            "jobs waiting for it are canceled before they were enqueued.",
            "POST",
            f"/jobengine/pack-runs/{archive['packRunId']}/cancel",
            operate,
            {},
            reason=True,
        )
        samples["orchestrator-packrun-retry"] = await s.exchange(
            "Retry of a failed pack run: a new run of the jobs that did not succeed "
            "(`validate` failed, `publish` was skipped); the dependency on `render`, "
            "which succeeded, is dropped.",
            "POST",
            f"/jobengine/pack-runs/{failed_run}/retry",
            backfill,
            {},
            reason=True,
            expect=201,
        )
        return samples


def _dead_lettered(count: int) -> Callable[[Json], bool]:
    """Whether dead-letter stats count `count` entries (an int64: a JSON string)."""
    return lambda body: int(body["totals"]["total"]) == count


def _status(body: Json) -> str:
    run = body.get("packRun", body)
    return str(run["status"])


def write_samples(samples: Mapping[str, Sample], directory: Path = SAMPLES_DIR) -> list[Path]:
    """Write each sample as `render` shapes it; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in SAMPLE_NAMES:
        path = sample_path(name, directory)
        path.write_text(render(samples[name]), encoding="utf-8")
        written.append(path)
    return written

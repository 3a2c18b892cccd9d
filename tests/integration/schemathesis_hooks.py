"""Schemathesis hooks (loaded through SCHEMATHESIS_HOOKS) for tests/integration/
test_schemathesis.py. They touch positive cases only; negative cases, the checks and
the phases are left alone, but for one kind of negative case no wire can carry: a form
body whose list property holds one scalar (`names=0`) is the very request of the
one-item list (`names: ["0"]`), which is valid, so it is not sent (`filter_case`).

Valid credentials: the resource operations get a valid access token on the command
line; the OAuth endpoints authenticate the client in the body (client_secret_post,
RFC 6749 §2.3.1; the document says so with `client_id`/`client_secret` fields, and
HTTP Basic beside them is refused), so a positive case there carries the test
client's id and secret (ORCHESTRATOR_ST_CLIENT_ID, ORCHESTRATOR_ST_CLIENT_SECRET)
instead of generated ones that never authenticate.

Two checks join schemathesis's own (`--checks all` runs them too): error texts are in
the product's words, never protobuf's or Python's (issue 8 item 12: "Message type …
has no field named … Available Fields"; item 5: Python json's "Expecting value: line 1
column 1 (char 0)", package-qualified message names); and every operation answered a
success at least once, so the run exercised more than refusals.

These request rules of this API cannot be said in JSON Schema, so no document makes a
generator respect them; the operations' descriptions state them in prose:

- a listing's `continuationToken` is valid only as a previous page's token, issued by
  this server for the same filters (AIP-158; anything else is 400
  INVALID_PAGE_TOKEN): a positive case carries none, as a first page does;
- `until` must be after `since` (ListAuditEntries; else 400 naming `until`): a
  positive case with both has them in that order;
- an `If-Match` precondition, or an `etag` field, holds only with the resource's
  current ETag (RFC 9110 §13.1.1, AIP-154; the two must agree): a positive case
  carries neither, as an unconditional write does;
- a quota's `jobType` is immutable (an update naming another is 400): a positive
  update names the quota's current job type, read with the run's token
  (ORCHESTRATOR_ST_TOKEN) from the server (ORCHESTRATOR_ST_BASE_URL) just before
  the update is sent;
- a tenant has one quota per job type (a second is 409): a positive create whose
  job type already has one names another (the generated one with a suffix), so the
  quotas it creates exist for the operations that need one (the fuzzing phase's
  updates and deletes of both prefixes draw from what the creates answered);
- a job's `backoff.initialDelay` (1s when absent) is at most its `maxDelay` (300s
  when absent): a positive case with a longer initial delay has a `maxDelay` equal
  to it;
- a pack run's jobs have unique names, depend only on jobs of the pack and name
  sources of the tenant that may enqueue: a positive create names its jobs job0,
  job1, ... without dependencies, all of one usable source (read, or registered);
- only a failed or canceled pack run can be retried (else 409): a positive retry of
  a running run cancels it first;
- a schedule is only for a `scheduler` source and its cron and time zone are ones
  cronsim and the IANA database know (else 400 naming `schedule.*`): a positive
  registration of a scheduler has an hourly UTC schedule with the generated job
  template, any other type none;
- a backfill's window is in the past, its end after its start, and a scheduler
  source's backfill names no other job type (else 400): a positive create backfills a
  job type of its own over a past hour (issue 10);
- a registered service's OpenAPI URL, as resolved against its base URL (the base URL
  plus /openapi.json when none is given), is at most 2048 characters (else 400 naming
  `baseUrl` or `openapiUrl`): a positive registration whose resolved URL is longer
  names an absolute OpenAPI URL of its own;
- a replicated entry carries its replication key, a revision of at least 1 and its
  origin (read-only fields of RegisteredService, which a peer copies from its own
  registry), and its resolved, absolute OpenAPI URL; a batch names each service once
  (else 400 naming `services[i]`): a positive replication sends revision 1, the
  batch's origin and the base URL's default OpenAPI URL when it has none, each name
  once;
- a dead-letter entry exists only when a job failed for good: the test dead-letters a
  few jobs before the run, and a positive replay of one entry names one of them (a
  pending one while there are some; a replayed one answers its result `skipped`);
- a pending replay's `failedBefore` is after its `failedAfter` (else 400 naming
  `failedBefore`): a positive case with both has them in that order (also under the
  mesh path POST /infrastructure/dlq/retry, the same method);
- an idempotency key is the tenant's, across every way to enqueue: reused with
  another body it is 409; a positive cross-service job (POST /jobs/recalc-quality,
  /jobs/notify-consolidation) that has one gets a fresh one;
- an event replay's `toEventId` is not before its `fromEventId` and at most 9999
  after it (else 400 naming `toEventId`): a positive case replays its first id only;
- an events clear's `olderThan` is not in the future, and a client bound to a tenant
  names no other `tenantId` (400, 403): a positive case clears its own events before
  2001;
- a workflow run names a definition that exists and variables whose names are
  variable names (else 404, 400): a positive run starts the shipped workflow, with
  its generated variables when their names are valid;
- a trace exists only once the server recorded it (else 404): a positive trace read
  names the trace of a GET /health made just before.

Platform-level operations (policy TENANT_MODE_PLATFORM in the proto options: the
platform's configuration, system health, registry and peers) refuse a
client bound to a tenant whatever its scopes (403 OPERATOR_CLIENT_REQUIRED): every
case of them, positive or not, carries the token of an operator client bound to no
tenant (ORCHESTRATOR_ST_OPERATOR_TOKEN), every other case the tenant's client's
(ORCHESTRATOR_ST_TOKEN), both through schemathesis auth providers (so its
authentication checks know them as the run's credentials). Which operations are
platform level is read from the methods' policies (`platform_operations`), by the
operation ids the document gives them (`Service_Method`, `_N` for an additional
binding).

The events watch never ends by itself (a live stream): every case of it, positive or
not, carries `X-Server-Timeout: 0.2`, so a stream that opens ends with a deadline
frame instead of holding the run. Its newline-delimited JSON answer (one
`{"result": ...}` or `{"error": ...}` object a line, the document's schema of one
line) is read by a deserializer handing schemathesis the first line to validate, and
a check validates every line against that schema. /metrics answers an HttpBody (any
media type, a string of bytes in the document): nothing to deserialize.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
import jsonschema_rs
import schemathesis

from orchestrator.api.v1 import options_pb2
from server.domain.jobs import BACKOFF_INITIAL_DEFAULT_S, BACKOFF_MAX_DEFAULT_S
from server.domain.orchestra.variables import NAME_PATTERN
from server.domain.registry import URL_MAX, effective_openapi_url
from server.policy import method_policy
from server.services.table import SERVICES

CLIENT_ID_VARIABLE = "ORCHESTRATOR_ST_CLIENT_ID"
CLIENT_SECRET_VARIABLE = "ORCHESTRATOR_ST_CLIENT_SECRET"
TOKEN_VARIABLE = "ORCHESTRATOR_ST_TOKEN"
OPERATOR_TOKEN_VARIABLE = "ORCHESTRATOR_ST_OPERATOR_TOKEN"
BASE_URL_VARIABLE = "ORCHESTRATOR_ST_BASE_URL"
SAGA_ID_VARIABLE = "ORCHESTRATOR_ST_SAGA_ID"  # a saga of the run's tenant (the test starts it)
QUOTA_PATH = re.compile(r"/(?:jobengine|orchestrator)/quotas/\{quotaId\}")
QUOTAS_PATH = re.compile(r"/(?:jobengine|orchestrator)/quotas")
SOURCES_PATH = re.compile(r"/(?:jobengine|orchestrator)/sources")
BACKFILLS_PATH = re.compile(r"/(?:jobengine|orchestrator)/backfills")
PACK_RUNS_PATH = re.compile(r"/(?:jobengine|orchestrator)/pack-runs")
PACK_RUN_RETRY_PATH = re.compile(r"/(?:jobengine|orchestrator)/pack-runs/\{packRunId\}/retry")
TOKEN = "continuationToken"
ETAG = "etag"
# The runtime's own words: protobuf's json_format, Python's exceptions and builtins,
# Python json's syntax errors ("Expecting value: line 1 column 1 (char 0)"), and
# package-qualified proto names ("orchestrator.jobengine.v1.ListSourcesRequest",
# "google.protobuf.Timestamp"): a client knows types by their schema names.
RUNTIME_WORDS = re.compile(
    r"Message type|Available Fields|has no field named|Failed to parse|Traceback"
    r"|\b[A-Z][A-Za-z]*(?:Error|Exception)\b|strptime|unhashable|NoneType"
    r"|\bExpecting\b|Extra data|\(char \d+\)|\bline \d+ column \d+"
    r"|\b[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)+\.[A-Z][A-Za-z0-9_]*"
)
# What a client sent, quoted back to it ("x.v1.Y" is not a decimal int32): its words.
QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'')
OAUTH_CLIENT_PATHS = frozenset({"/oauth/token", "/oauth/introspect", "/oauth/revoke"})
EVENTS_REPLAY_PATH = "/infrastructure/events/replay"
EVENTS_CLEAR_PATH = "/infrastructure/events/clear"
EVENTS_WATCH_PATH = "/infrastructure/events/watch"
DEFINITION_PATH = "/orchestra-admin/definitions/{definitionId}"
REGISTER_PATH = "/registry/register"
PENDING_REPLAY_PATH = re.compile(
    r"/(?:jobengine|orchestrator)/deadletter/replay/pending|/infrastructure/dlq/retry"
)
CROSS_SERVICE_JOB_PATHS = frozenset({"/jobs/recalc-quality", "/jobs/notify-consolidation"})
ENTRY_REPLAY_PATH = re.compile(r"/(?:jobengine|orchestrator)/deadletter/\{entryId\}/replay")
REPLICATE_PATH = "/registry/replicate"
TRACE_PATH = "/infrastructure/tracing/trace/{traceId}"
WORKFLOW_RUN_PATH = "/workflows/run"
REPORT_REQUEST_PATH = "/report/request"
SAGA_PATH = "/infrastructure/saga/{sagaId}"
VARIABLE_NAME = re.compile(NAME_PATTERN)
OPERATOR_REASON = {"X-Stella-Operator-Reason": "schemathesis run"}


def platform_operations() -> frozenset[str]:
    """`Service_Method` of every platform-level method (operator clients only)."""
    return frozenset(
        f"{service.name}_{method.name}"
        for service in SERVICES
        for method in service.methods
        if method_policy(method).tenant_mode == options_pb2.TENANT_MODE_PLATFORM
    )


PLATFORM_OPERATIONS = platform_operations()


# `Service_Method`, or `Service_Method_N` for an additional binding (gateway/openapi.py).
PLATFORM_OPERATION_IDS = (
    "^(?:" + "|".join(re.escape(name) for name in sorted(PLATFORM_OPERATIONS)) + r")(?:_\d+)?$"
)


class _BearerToken:
    """An access token from the environment, sent as `Authorization: Bearer`."""

    variable = TOKEN_VARIABLE

    def get(self, case: Any, context: Any) -> str | None:
        return os.environ.get(self.variable) or None

    def set(self, case: Any, data: str, context: Any) -> None:
        if case.headers is None:
            case.headers = {}
        case.headers["Authorization"] = f"Bearer {data}"


if os.environ.get(OPERATOR_TOKEN_VARIABLE):  # only in test_schemathesis.py's run

    @schemathesis.auth(refresh_interval=None).apply_to(operation_id_regex=PLATFORM_OPERATION_IDS)
    class OperatorToken(_BearerToken):
        """Platform-level operations: the operator client's token."""

        variable = OPERATOR_TOKEN_VARIABLE

    @schemathesis.auth(refresh_interval=None).skip_for(operation_id_regex=PLATFORM_OPERATION_IDS)
    class TenantToken(_BearerToken):
        """Every other operation: the token of the client bound to the test's tenant."""


def _minimal_definition() -> dict[str, Any]:
    """A process definition every validation rule accepts: start -> end."""
    return {
        "nodes": [{"id": "start", "type": "start"}, {"id": "done", "type": "end"}],
        "flows": [{"from": "start", "to": "done"}],
    }


def _ensure_definition(case: Any) -> None:
    """Store the definition a positive read names (a minimal one, if it is new), so the
    read finds it; with the run's token (orch:admin among its scopes)."""
    base, token = os.environ.get(BASE_URL_VARIABLE), os.environ.get(TOKEN_VARIABLE)
    definition_id = (case.path_parameters or {}).get("definitionId")
    if not base or not token or not isinstance(definition_id, str):
        return
    headers = {"Authorization": f"Bearer {token}", **OPERATOR_REASON}
    path = DEFINITION_PATH.replace("{definitionId}", quote(definition_id, safe=""))
    try:
        httpx.put(base + path, json=_minimal_definition(), headers=headers, timeout=10)
    except (httpx.HTTPError, UnicodeError):
        return


def _instant(value: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).upper())
    except ValueError:
        return None


def _with_client(body: dict[str, Any]) -> None:
    client_id = os.environ.get(CLIENT_ID_VARIABLE)
    secret = os.environ.get(CLIENT_SECRET_VARIABLE)
    if client_id and secret:
        body["client_id"], body["client_secret"] = client_id, secret


def _ordered_window(query: dict[str, Any], since_key: str = "since", until: str = "until") -> None:
    """`query[until]` after `query[since_key]` when both are given: swapped, or the
    later one dropped when they are equal."""
    start, end = _instant(query.get(since_key)), _instant(query.get(until))
    if start is None or end is None or start.tzinfo is None or end.tzinfo is None:
        return
    if end == start:
        del query[until]
    elif end < start:
        query[since_key], query[until] = query[until], query[since_key]


def _read(case: Any, path: str, params: dict[str, str] | None = None) -> Any:
    """The JSON body of a GET of `path` with the run's token and `case`'s tenant and
    project headers, None when it is not a 200."""
    base, token = os.environ.get(BASE_URL_VARIABLE), os.environ.get(TOKEN_VARIABLE)
    if not base or not token:
        return None
    headers = {"Authorization": f"Bearer {token}"}
    for name, value in (case.headers or {}).items():
        if name.lower().startswith("x-stella-") and isinstance(value, str):
            headers[name] = value
    try:
        response = httpx.get(base + path, params=params, headers=headers, timeout=10)
    except (httpx.HTTPError, UnicodeError):
        return None
    return response.json() if response.status_code == 200 else None


def _send(case: Any, method: str, path: str, body: Any = None) -> Any:
    """`method` `path` with the run's token, `case`'s X-Stella-* headers and an operator
    reason; the JSON body of a 2xx answer, else None."""
    base, token = os.environ.get(BASE_URL_VARIABLE), os.environ.get(TOKEN_VARIABLE)
    if not base or not token:
        return None
    headers = {"Authorization": f"Bearer {token}", "X-Stella-Operator-Reason": "schemathesis run"}
    for name, value in (case.headers or {}).items():
        if name.lower().startswith("x-stella-") and isinstance(value, str):
            headers[name] = value
    try:
        response = httpx.request(method, base + path, json=body, headers=headers, timeout=10)
    except (httpx.HTTPError, UnicodeError):
        return None
    return response.json() if 200 <= response.status_code < 300 else None


def _usable_source(case: Any) -> str | None:
    """A source of the case's tenant (and project) that may enqueue: an enabled, unpaused
    one listed, else one registered now; None when neither works."""
    page = _read(case, "/jobengine/sources", {"limit": "200"}) or {}
    for source in page.get("items") or []:
        if source.get("enabled") and not source.get("paused"):
            return str(source["sourceId"])
    made = _send(case, "POST", "/jobengine/sources", {"name": "packs", "sourceType": "manual"})
    return str(made["sourceId"]) if isinstance(made, dict) and "sourceId" in made else None


def _runnable_pack(case: Any, body: dict[str, Any]) -> None:
    """A pack's jobs have unique names, depend only on jobs of the pack (between items:
    no schema says it) and name sources that exist: a positive create has 1 to 100
    jobs named job0, job1, ..., without dependencies, of a usable source."""
    jobs = [job for job in body.get("jobs") or [] if isinstance(job, dict)][:100]
    body["jobs"] = jobs or [{"jobType": "pack.work"}]
    source = _usable_source(case)
    for i, job in enumerate(body["jobs"]):
        job["name"], job["dependsOn"] = f"job{i}", []
        if source is not None:
            job["sourceId"] = source


def _retryable_run(case: Any) -> None:
    """Only a failed or canceled run can be retried: a positive retry of a running run
    cancels it first."""
    run_id = (case.path_parameters or {}).get("packRunId")
    if not isinstance(run_id, str):
        return
    path = f"/jobengine/pack-runs/{quote(run_id, safe='')}"
    run = _read(case, path)
    if isinstance(run, dict) and run.get("status") == "running":
        _send(case, "POST", f"{path}/cancel", {})


def _existing_entry(case: Any) -> None:
    """A positive replay of one entry names an entry of the tenant (the test made a few
    dead letters before the run): the oldest listed, pending ones first."""
    for status in ("pending", ""):
        page = _read(case, "/jobengine/deadletter", {"status": status, "limit": "200"}) or {}
        items = page.get("items") or []
        if items:
            case.path_parameters = {**(case.path_parameters or {}), "entryId": items[-1]["entryId"]}
            return


def _recorded_trace(case: Any) -> None:
    """A positive trace read names a trace the server recorded: a generated id names
    none (404). A GET /health's (open) X-Stella-Trace-Id is one."""
    base = os.environ.get(BASE_URL_VARIABLE)
    if not base:
        return
    try:
        trace_id = httpx.get(base + "/health", timeout=10).headers.get("X-Stella-Trace-Id")
    except httpx.HTTPError:
        return
    if trace_id:
        case.path_parameters = {**(case.path_parameters or {}), "traceId": trace_id}


def _current_job_type(case: Any) -> str | None:
    """The job type of the quota `case` updates, None when there is none to read."""
    quota_id = (case.path_parameters or {}).get("quotaId")
    if not isinstance(quota_id, str):
        return None
    found = _read(case, case.path.replace("{quotaId}", quote(quota_id, safe="")))
    job_type = found.get("jobType") if isinstance(found, dict) else None
    return job_type if isinstance(job_type, str) else None


def _unused_job_type(case: Any, job_type: str) -> str:
    """`job_type`, or when the tenant has a quota for it, a job type it has none for:
    `job_type` with a suffix, within the slug's 64 characters."""
    for attempt in range(100):
        candidate = job_type if attempt == 0 else f"{job_type[:60]}-{attempt}"
        found = _read(case, case.path, {"jobType": candidate, "limit": "1"})
        if not isinstance(found, dict) or not found.get("items"):
            return candidate
    return job_type


def _backoff_within(job: Any) -> None:
    backoff = job.get("backoff") if isinstance(job, dict) else None
    if not isinstance(backoff, dict):
        return
    # an absent initialDelay is the default (1 s), which a shorter maxDelay refuses too
    initial_delay = str(backoff.get("initialDelay", f"{BACKOFF_INITIAL_DEFAULT_S}s"))
    initial = float(initial_delay.removesuffix("s"))
    maximum = float(str(backoff.get("maxDelay", f"{BACKOFF_MAX_DEFAULT_S}s")).removesuffix("s"))
    if initial > maximum:
        backoff["maxDelay"] = initial_delay


def _scheduled_or_not(body: dict[str, Any]) -> None:
    """A scheduler gets a valid schedule around its generated job template; any other
    source type none."""
    if body.get("sourceType") != "scheduler":
        body.pop("schedule", None)
        return
    schedule = body.get("schedule")
    template = schedule.get("jobTemplate") if isinstance(schedule, dict) else None
    if not isinstance(template, dict):
        template = {"jobType": "scheduled"}
    _backoff_within(template)
    body["schedule"] = {"cron": "0 * * * *", "timeZone": "UTC", "jobTemplate": template}


def _past_window(body: dict[str, Any]) -> None:
    """A job type of its own (no source: each type is a scope of its own) over a past
    hour; reason and ticket as generated."""
    hour = int(datetime.now(UTC).timestamp()) // 3600 * 3600 - 7200
    body.pop("sourceId", None)
    body["jobType"] = f"st-{uuid.uuid4().hex[:12]}"
    body["windowStart"] = datetime.fromtimestamp(hour, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body["windowEnd"] = datetime.fromtimestamp(hour + 3600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


SHORT_OPENAPI_URL = "https://registry.example/openapi.json"


def _short(url: str) -> str:
    return url if len(url) <= URL_MAX else SHORT_OPENAPI_URL


def _resolvable(body: dict[str, Any]) -> None:
    """A registration whose resolved OpenAPI URL is too long names a short one."""
    base, openapi = body.get("baseUrl"), body.get("openapiUrl") or ""
    if not isinstance(base, str) or not isinstance(openapi, str):
        return
    if len(effective_openapi_url(base, openapi)) > URL_MAX:
        body["openapiUrl"] = SHORT_OPENAPI_URL


def _replicas(body: dict[str, Any]) -> None:
    """Each service once, with revision 1, the batch's origin and an OpenAPI URL (its
    base URL's default one when it has none)."""
    services = body.get("services")
    if not isinstance(services, list):
        return
    kept: dict[object, dict[str, Any]] = {}
    for service in services:
        if isinstance(service, dict) and service.get("name") not in kept:
            kept[service.get("name")] = service
            service.update({"revision": "1", "origin": body.get("origin")})
            base = service.get("baseUrl")
            if not service.get("openapiUrl") and isinstance(base, str):
                service["openapiUrl"] = _short(effective_openapi_url(base, ""))
    body["services"] = list(kept.values())


def _positive(case: Any) -> bool:
    meta = case.meta
    return meta is not None and bool(meta.generation.mode.is_positive)


def _within_rules(case: Any) -> None:
    """Keep a positive case within the rules above that need no server state."""
    if isinstance(case.body, dict) and case.operation.path in OAUTH_CLIENT_PATHS:
        _with_client(case.body)
    if case.headers is not None:
        for name in [name for name in case.headers if name.lower() == "if-match"]:
            del case.headers[name]
    for part in (case.body, case.query):
        if isinstance(part, dict):
            part.pop(ETAG, None)
    if isinstance(case.body, dict):
        for job in (case.body, *(case.body.get("jobs") or ())):
            _backoff_within(job)
        if case.operation.path == EVENTS_REPLAY_PATH and "fromEventId" in case.body:
            case.body["toEventId"] = case.body["fromEventId"]
        if PENDING_REPLAY_PATH.fullmatch(case.operation.path):
            _ordered_window(case.body, "failedAfter", "failedBefore")
        if case.operation.path == REGISTER_PATH:
            _resolvable(case.body)
        if case.operation.path == REPLICATE_PATH:
            _replicas(case.body)
        if case.operation.path == EVENTS_CLEAR_PATH:
            case.body.update({"olderThan": "2001-01-01T00:00:00Z", "tenantId": ""})
        if case.operation.path == WORKFLOW_RUN_PATH:
            _runnable_workflow(case.body)
        if case.operation.path == REPORT_REQUEST_PATH and isinstance(
            case.body.get("payload"), dict
        ):
            # A payload's "format" must be the report's format (`format`, "json" if empty).
            case.body["payload"].pop("format", None)
        if case.operation.path in CROSS_SERVICE_JOB_PATHS and case.body.get("idempotency_key"):
            case.body["idempotency_key"] = f"st-{uuid.uuid4().hex}"
    if case.operation.path == DEFINITION_PATH and case.method.upper() == "PUT":
        # The graph rules cannot be said in JSON Schema: a valid graph of the path's id.
        definition_id = (case.path_parameters or {}).get("definitionId")
        case.body = {"id": definition_id, **_minimal_definition()}
    for part in (case.query, case.body):  # a listing's query, a pending replay's body
        if isinstance(part, dict) and part.get(TOKEN):
            del part[TOKEN]
    if isinstance(case.body, dict | list):
        case.body = _exact_integers(case.body)
    if isinstance(case.query, dict):
        _ordered_window(case.query)


def _exact_integers(value: Any) -> Any:
    """`value` with integers beyond 2^53 clamped to 2^53: free JSON (Struct, Value)
    carries numbers as doubles, so the gateway refuses such an integer (400 naming
    it), a rule on nested values `{"type": "object"}` does not state."""
    if isinstance(value, dict):
        return {key: _exact_integers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_exact_integers(item) for item in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53:
        return 2**53 if value > 0 else -(2**53)
    return value


def _runnable_workflow(body: dict[str, Any]) -> None:
    """A positive workflow run starts the shipped workflow (a generated definition id
    names none that exists: 404) with variables only when their names are variable
    names (a rule on an object's keys the schema does not state)."""
    body.pop("definitionId", None)
    variables = body.get("variables")
    if isinstance(variables, dict) and not all(VARIABLE_NAME.fullmatch(k) for k in variables):
        body.pop("variables")


def _ends_soon(case: Any) -> None:
    """The live watch: a deadline (gateway X-Server-Timeout) ends its stream."""
    if case.headers is None:
        case.headers = {}
    case.headers["X-Server-Timeout"] = "0.2"


FORM = "application/x-www-form-urlencoded"


def _form_lists(case: Any) -> set[str]:
    """The properties of `case`'s form body schema that are lists."""
    raw = case.operation.schema.raw_schema
    body = case.operation.definition.raw.get("requestBody") or {}
    schema = ((body.get("content") or {}).get(FORM) or {}).get("schema") or {}
    if "$ref" in schema:
        schema = raw["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    lists = set()
    for name, value in (schema.get("properties") or {}).items():
        kind = value.get("type")
        if kind == "array" or (isinstance(kind, list) and "array" in kind):
            lists.add(name)
    return lists


@schemathesis.hook
def filter_case(context: Any, case: Any) -> bool:
    """A negative form case whose list property holds one scalar (`names=0`) is the very
    request of the one-item list (`["0"]`): nothing on the wire violates the schema,
    so it is not sent as a violation."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_negative or case.media_type != FORM:
        return True
    if not isinstance(case.body, dict):
        return True
    return not any(
        case.body.get(name) is not None and not isinstance(case.body.get(name), (list, dict))
        for name in _form_lists(case)
    )


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    if case.operation.path == EVENTS_WATCH_PATH:
        _ends_soon(case)
    if _positive(case):
        _within_rules(case)
    return case


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """Again just before sending, because the stateful phase fills a case in after
    map_case: a link's values (a quota id from one list entry, a body with another
    entry's jobType and etag) are merged into the generated case. The quota's current
    job type is read here, when the quota id is final."""
    if case.operation.path == EVENTS_WATCH_PATH:  # every case, also the stateful phase's
        _ends_soon(case)
    if not _positive(case):
        return
    _within_rules(case)
    path, body = case.operation.path or "", case.body
    if case.method.upper() == "POST" and ENTRY_REPLAY_PATH.fullmatch(path):
        _existing_entry(case)
    if case.method.upper() == "GET" and path == TRACE_PATH:
        _recorded_trace(case)
    if case.method.upper() == "GET" and path == SAGA_PATH and os.environ.get(SAGA_ID_VARIABLE):
        # A generated id names no saga (404): a positive read names the tenant's one.
        case.path_parameters = {
            **(case.path_parameters or {}),
            "sagaId": os.environ[SAGA_ID_VARIABLE],
        }
    if not isinstance(body, dict):
        return
    if case.method.upper() == "GET" and path == DEFINITION_PATH:
        _ensure_definition(case)
        if isinstance(case.query, dict):
            case.query.pop("version", None)  # the latest, which exists
    if case.method.upper() == "PUT" and QUOTA_PATH.fullmatch(path):
        current = _current_job_type(case)
        if current is not None:
            body["jobType"] = current
    if case.method.upper() == "POST" and PACK_RUNS_PATH.fullmatch(path):
        _runnable_pack(case, body)
    if case.method.upper() == "POST" and PACK_RUN_RETRY_PATH.fullmatch(path):
        _retryable_run(case)
    if case.method.upper() == "POST" and SOURCES_PATH.fullmatch(path):
        _scheduled_or_not(body)
    if case.method.upper() == "POST" and BACKFILLS_PATH.fullmatch(path):
        _past_window(body)
    job_type = body.get("jobType")
    if case.method.upper() == "POST" and QUOTAS_PATH.fullmatch(path) and isinstance(job_type, str):
        body["jobType"] = _unused_job_type(case, job_type)


def error_texts(body: Any) -> list[str]:
    """The human-readable texts of an error body (google.rpc.Status or RFC 6749 §5.2)."""
    if not isinstance(body, dict):
        return []
    texts = [body.get("error"), body.get("error_description")]
    for detail in body.get("details") or ():
        if isinstance(detail, dict):
            for violation in detail.get("fieldViolations") or ():
                if isinstance(violation, dict):
                    texts.append(violation.get("description"))
    return [text for text in texts if isinstance(text, str)]


def runtime_words(text: str, schema_names: Collection[str] = ()) -> str | None:
    """The first of the runtime's words in an error text, outside what it quotes.

    `schema_names` are the document's component schemas: types are named by them in
    error texts (`expected a JSON object (JobError)`), so such a word is the product's
    even when it ends in Error."""
    for found in RUNTIME_WORDS.finditer(QUOTED.sub('""', text)):
        if found[0] not in schema_names:
            return found[0]
    return None


def schema_names(case: Any) -> frozenset[str]:
    """The component schema names of the document `case` was generated from."""
    raw = getattr(getattr(case.operation, "schema", None), "raw_schema", None)
    if not isinstance(raw, dict):
        return frozenset()
    names = _SCHEMA_NAMES.get(id(raw))
    if names is None:
        schemas = (raw.get("components") or {}).get("schemas") or {}
        names = _SCHEMA_NAMES[id(raw)] = frozenset(schemas)
    return names


_SCHEMA_NAMES: dict[int, frozenset[str]] = {}


@schemathesis.check
def error_texts_in_product_words(ctx: Any, response: Any, case: Any) -> bool | None:
    """An error answer explains itself without the runtime's words."""
    if response.status_code < 400:
        return None
    try:
        body = json.loads(response.content)
    except ValueError:
        return None
    names = schema_names(case)
    for text in error_texts(body):
        found = runtime_words(text, names)
        if found is not None:
            raise AssertionError(f"error text uses the runtime's words ({found!r}): {text}")
    return None


NDJSON = "application/x-ndjson"


def ndjson_lines(content: bytes) -> list[Any]:
    """The JSON values of a newline-delimited JSON body, one a non-empty line; raises
    ValueError naming the line that is not JSON."""
    values = []
    for number, line in enumerate(content.decode().splitlines(), 1):
        if line.strip():
            try:
                values.append(json.loads(line))
            except ValueError as error:
                raise ValueError(f"line {number} is not JSON: {error}") from None
    return values


@schemathesis.deserializer(NDJSON)
def first_ndjson_line(ctx: Any, response: Any) -> Any:
    """A stream's first line (schemathesis validates one value; the check below, all)."""
    lines = ndjson_lines(response.content)
    if not lines:
        raise ValueError("an empty stream: not even the ending frame")
    return lines[0]


@schemathesis.check
def every_ndjson_line_matches(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every line of a newline-delimited JSON answer matches the document's schema of
    one line (its $refs resolved in the document)."""
    media_type = (response.headers.get("content-type") or [""])[0].split(";")[0]
    if response.status_code >= 300 or media_type.strip().lower() != NDJSON:
        return None
    raw = case.operation.schema.raw_schema
    answer = case.operation.definition.raw["responses"][str(response.status_code)]
    line_schema = answer["content"][NDJSON]["schema"]
    # The document's components beside it, so its "#/components/..." $refs resolve.
    validator = jsonschema_rs.validator_for({**line_schema, "components": raw["components"]})
    for number, line in enumerate(ndjson_lines(response.content), 1):
        error = next(iter(validator.iter_errors(line)), None)
        if error is not None:
            raise AssertionError(f"stream line {number} does not match its schema: {error.message}")
    return None


@schemathesis.check
class EveryOperationSucceeds:
    """Every operation tested answered 2xx at least once in the run."""

    def __init__(self) -> None:
        self.tested: set[str] = set()
        self.succeeded: set[str] = set()

    def after_response(self, ctx: Any, response: Any, case: Any) -> None:
        self.tested.add(case.operation.label)
        if 200 <= response.status_code < 300:
            self.succeeded.add(case.operation.label)

    def after_run(self, ctx: Any) -> None:
        never = sorted(self.tested - self.succeeded)
        if never:
            raise AssertionError("never answered 2xx: " + ", ".join(never))

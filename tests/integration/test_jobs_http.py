"""The REST contract of jobs (DESIGN §4.1 `/jobs`, issue 9 point 2): paths under both
prefixes, status codes, headers and bodies, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from server.app import Application
from server.storage.tables import JobRow, table_of

CACHE = "private, max-age=60, stale-if-error=300"
_jobs = table_of(JobRow)


@pytest.fixture(autouse=True)
def _authenticated(http: httpx.AsyncClient, access_token: str) -> None:
    http.headers["Authorization"] = f"Bearer {access_token}"


def _headers(tenant: str, **extra: str) -> dict[str, str]:
    return {"X-Stella-Tenant": tenant, "X-Stella-Operator-Reason": "tests", **extra}


@pytest.fixture
async def source_id(http: httpx.AsyncClient, tenant: str) -> str:
    response = await http.post(
        "/jobengine/sources",
        json={"name": "http-jobs", "sourceType": "manual"},
        headers=_headers(tenant),
    )
    assert response.status_code == 201, response.text
    return str(response.json()["sourceId"])


async def _enqueue(
    http: httpx.AsyncClient, tenant: str, body: dict[str, Any], prefix: str = "/jobengine"
) -> httpx.Response:
    return await http.post(f"{prefix}/jobs", json=body, headers=_headers(tenant))


def _error(response: httpx.Response) -> tuple[str, str, list[str], list[str | None]]:
    """(code, message, violation fields, ErrorInfo reasons) of an error body."""
    document = response.json()
    assert set(document) == {"error", "code", "details"}
    fields = [
        v["field"]
        for d in document["details"]
        if d["@type"].endswith("BadRequest")
        for v in d["fieldViolations"]
    ]
    reasons = [d.get("reason") for d in document["details"] if d["@type"].endswith("ErrorInfo")]
    return document["code"], document["error"], fields, reasons


async def test_enqueue_answers_201_with_the_job(
    http: httpx.AsyncClient, tenant: str, source_id: str
) -> None:
    response = await _enqueue(
        http,
        tenant,
        {
            "jobType": "scan.image",
            "sourceId": source_id,
            "priority": 5,
            "payload": {"image": "registry.test/app:1.2", "layers": [1, 2]},
            "runAt": "2031-01-02T03:04:05.5Z",
            "maxAttempts": 4,
            "backoff": {"initialDelay": "0.250s", "maxDelay": "30s", "multiplier": 1.5},
            "idempotencyKey": "scan-1",
            "packRunId": "pr-1",
        },
    )
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {
        "jobId",
        "jobType",
        "sourceId",
        "status",
        "priority",
        "payload",
        "attempts",
        "maxAttempts",
        "runAt",
        "nextEligibleAt",
        "idempotencyKey",
        "packRunId",
        "createdAt",
        "updatedAt",
        "backoff",
    }
    assert (body["jobType"], body["sourceId"], body["status"]) == (
        "scan.image",
        source_id,
        "queued",
    )
    assert (body["priority"], body["attempts"], body["maxAttempts"]) == (5, 0, 4)
    assert body["payload"] == {"image": "registry.test/app:1.2", "layers": [1, 2]}
    assert body["runAt"] == body["nextEligibleAt"] == "2031-01-02T03:04:05.500Z"
    assert body["backoff"] == {
        "initialDelay": "0.250s",
        "maxDelay": "30s",
        "multiplier": 1.5,
        "jitter": 0.2,
    }
    assert (body["idempotencyKey"], body["packRunId"]) == ("scan-1", "pr-1")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", body["createdAt"])

    fetched = await http.get(
        f"/jobengine/jobs/{body['jobId']}", headers={"X-Stella-Tenant": tenant}
    )
    assert fetched.status_code == 200
    assert fetched.headers["cache-control"] == CACHE
    document = fetched.json()
    assert document["job"] == body
    [event] = document["history"]
    assert set(event) == {"eventId", "type", "subject", "data", "traceId", "time"}
    assert (event["type"], event["subject"], event["data"]) == (
        "job.enqueued",
        f"jobs/{body['jobId']}",
        {"to": "queued"},
    )
    assert event["time"] == body["createdAt"]
    cached = await http.get(
        f"/jobengine/jobs/{body['jobId']}",
        headers={"X-Stella-Tenant": tenant, "If-None-Match": fetched.headers["etag"]},
    )
    assert cached.status_code == 304


@pytest.mark.parametrize("payload", [{}, [], 0, "", None, {"a": {}, "b": []}])
async def test_a_payload_comes_back_as_sent(
    http: httpx.AsyncClient, tenant: str, source_id: str, payload: Any
) -> None:
    """Any JSON value, empty object and array included, over REST and back from GET
    (not `null`, not a missing field: an empty value is still a value)."""
    created = await _enqueue(
        http, tenant, {"jobType": "echo", "sourceId": source_id, "payload": payload}
    )
    assert created.status_code == 201, created.text
    assert created.json()["payload"] == payload
    fetched = await http.get(
        f"/jobengine/jobs/{created.json()['jobId']}", headers={"X-Stella-Tenant": tenant}
    )
    assert fetched.json()["job"]["payload"] == payload


async def test_idempotent_repeat_is_200_and_another_body_409(
    app: Application, http: httpx.AsyncClient, tenant: str, source_id: str
) -> None:
    body = {"jobType": "ingest", "sourceId": source_id, "idempotencyKey": "k-1", "payload": [1]}
    first = await _enqueue(http, tenant, body)
    again = await _enqueue(http, tenant, body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    legacy = await _enqueue(http, tenant, body, prefix="/orchestrator")
    assert legacy.status_code == 200
    assert legacy.json() == first.json()

    conflict = await _enqueue(http, tenant, {**body, "payload": [2]})
    assert conflict.status_code == 409
    assert _error(conflict) == (
        "ALREADY_EXISTS",
        "a job with idempotencyKey 'k-1' already exists in this tenant with another request body",
        [],
        ["JOB_EXISTS"],
    )
    async with app.db.read() as conn:
        count = (
            await conn.execute(
                sa.select(sa.func.count()).select_from(_jobs).where(_jobs.c.tenant_id == tenant)
            )
        ).scalar_one()
    assert count == 1


async def test_legacy_prefix_enqueues_with_deprecation_headers(
    http: httpx.AsyncClient, tenant: str, source_id: str
) -> None:
    response = await _enqueue(
        http, tenant, {"jobType": "old", "sourceId": source_id}, prefix="/orchestrator"
    )
    assert response.status_code == 201
    assert response.headers["deprecation"] == "true"
    assert response.headers["link"] == '</jobengine/jobs>; rel="successor-version"'
    job_id = response.json()["jobId"]
    listing = await http.get("/orchestrator/jobs", headers={"X-StellaOps-Tenant": tenant})
    assert [item["jobId"] for item in listing.json()["items"]] == [job_id]
    assert listing.headers["link"] == '</jobengine/jobs>; rel="successor-version"'
    canceled = await http.post(
        f"/orchestrator/jobs/{job_id}/cancel", json={}, headers=_headers(tenant)
    )
    assert canceled.status_code == 200
    assert canceled.json()["status"] == "canceled"
    replayed = await http.post(
        f"/orchestrator/jobs/{job_id}/replay", json={}, headers=_headers(tenant)
    )
    assert replayed.status_code == 201
    assert replayed.headers["link"] == (
        f'</jobengine/jobs/{job_id}/replay>; rel="successor-version"'
    )
    assert replayed.json()["replayOf"] == job_id


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (
            {"runAt": "tomorrow"},
            "job.runAt",
            None,  # the gateway's RFC 3339 message
        ),
        (
            {"priority": 2000},
            "job.priority",
            "job.priority: must be between -1000 and 1000, got 2000",
        ),
        (
            {"maxAttempts": -1},
            "job.maxAttempts",
            "job.maxAttempts: must be between 1 and 100, got -1",
        ),
        ({"jobType": "UPPER"}, "job.jobType", None),
        ({"idempotencyKey": ""}, "job.idempotencyKey", "job.idempotencyKey: must not be blank"),
        (
            {"backoff": {"multiplier": 0.5}},
            "job.backoff.multiplier",
            "job.backoff.multiplier: must be from 1.0 to 10.0, got 0.5",
        ),
    ],
)
async def test_bad_fields_are_400_naming_them(
    app: Application,
    http: httpx.AsyncClient,
    tenant: str,
    source_id: str,
    change: dict[str, Any],
    field: str,
    message: str | None,
) -> None:
    response = await _enqueue(http, tenant, {"jobType": "ok", "sourceId": source_id, **change})
    assert response.status_code == 400, response.text
    code, error, fields, _ = _error(response)
    assert code == "INVALID_ARGUMENT"
    assert field in error
    assert fields == [field]
    if message is not None:
        assert error == message
    listing = await http.get("/jobengine/jobs", headers={"X-Stella-Tenant": tenant})
    assert listing.json() == {"items": []}


async def test_oversized_payload_is_400_naming_payload(
    app: Application, http: httpx.AsyncClient, tenant: str, source_id: str
) -> None:
    cap = app.settings.job_payload_max_bytes
    response = await _enqueue(
        http, tenant, {"jobType": "big", "sourceId": source_id, "payload": {"blob": "x" * cap}}
    )
    assert response.status_code == 400
    assert _error(response) == (
        "INVALID_ARGUMENT",
        f"job.payload: must be at most {cap} bytes as JSON, got {cap + 11}",
        ["job.payload"],
        ["INVALID_ARGUMENT"],
    )


async def test_a_huge_bad_value_is_echoed_cut_to_its_start(
    http: httpx.AsyncClient, tenant: str, source_id: str
) -> None:
    """An error repeats at most 200 characters of a caller's text, then its length: a
    100,000-character job type is not sent back twice (message and violation)."""
    response = await _enqueue(http, tenant, {"jobType": "X" * 100_000, "sourceId": source_id})
    assert response.status_code == 400
    slug = "must be a lowercase slug: a letter, then up to 63 letters, digits, '.', '_' or '-'"
    expected = f"{slug}, got '{'X' * 200}…' (100000 characters)"
    assert _error(response) == (
        "INVALID_ARGUMENT",
        f"job.jobType: {expected}",
        ["job.jobType"],
        ["INVALID_ARGUMENT"],
    )
    assert len(response.content) < 1_500


async def test_unknown_or_paused_source(
    http: httpx.AsyncClient, tenant: str, source_id: str
) -> None:
    missing = await _enqueue(http, tenant, {"jobType": "x", "sourceId": "nope"})
    assert missing.status_code == 404
    assert _error(missing) == ("NOT_FOUND", "source 'nope' not found", [], ["SOURCE_NOT_FOUND"])
    pause = await http.post(
        f"/jobengine/sources/{source_id}/pause", json={}, headers=_headers(tenant)
    )
    assert pause.status_code == 200
    paused = await _enqueue(http, tenant, {"jobType": "x", "sourceId": source_id})
    # FAILED_PRECONDITION: a conflict with the source's state (JobsService's 409)
    assert paused.status_code == 409
    assert _error(paused) == (
        "FAILED_PRECONDITION",
        f"source '{source_id}' is paused; resume it to enqueue jobs",
        [],
        ["SOURCE_PAUSED"],
    )


async def test_batch_enqueue_and_its_limits(
    http: httpx.AsyncClient, tenant: str, source_id: str
) -> None:
    good = {"jobType": "b", "sourceId": source_id}
    malformed = await http.post(
        "/jobengine/jobs:batchEnqueue",
        json={"jobs": [good, {"jobType": "B!", "sourceId": source_id}, {"sourceId": source_id}]},
        headers=_headers(tenant),
    )
    assert malformed.status_code == 400, malformed.text
    code, message, fields, _ = _error(malformed)
    assert (code, fields) == ("INVALID_ARGUMENT", ["jobs[1].jobType", "jobs[2].jobType"])
    assert message.startswith("jobs[1].jobType: must be a lowercase slug")
    response = await http.post(
        "/jobengine/jobs:batchEnqueue",
        json={"jobs": [good, {"jobType": "b", "sourceId": "no-such-source"}]},
        headers=_headers(tenant),
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    first, second = response.json()["results"]
    assert first["status"] == {} or first["status"].get("code", 0) == 0
    assert first["created"] is True
    assert first["job"]["status"] == "queued"
    assert second["status"]["code"] == 5
    assert second["status"]["message"] == "source 'no-such-source' not found"
    assert "job" not in second

    too_many = await http.post(
        "/jobengine/jobs:batchEnqueue", json={"jobs": [good] * 1001}, headers=_headers(tenant)
    )
    assert too_many.status_code == 400
    assert _error(too_many) == (
        "INVALID_ARGUMENT",
        "jobs: must hold 1 to 1000 jobs, got 1001",
        ["jobs"],
        ["INVALID_ARGUMENT"],
    )
    listing = await http.get("/jobengine/jobs", headers={"X-Stella-Tenant": tenant})
    assert [item["jobId"] for item in listing.json()["items"]] == [first["job"]["jobId"]]


async def test_list_summary_and_their_caching(
    http: httpx.AsyncClient, tenant: str, source_id: str
) -> None:
    ids = []
    for job_type in ("a", "b", "a"):
        response = await _enqueue(http, tenant, {"jobType": job_type, "sourceId": source_id})
        ids.append(response.json()["jobId"])
    page = await http.get(
        "/jobengine/jobs", params={"limit": 2}, headers={"X-Stella-Tenant": tenant}
    )
    assert page.status_code == 200
    assert page.headers["cache-control"] == CACHE
    assert page.headers["etag"]
    first = page.json()
    assert len(first["items"]) == 2 and first["continuationToken"]
    rest = await http.get(
        "/jobengine/jobs",
        params={"limit": 2, "continuationToken": first["continuationToken"]},
        headers={"X-Stella-Tenant": tenant},
    )
    seen = [item["jobId"] for item in first["items"] + rest.json()["items"]]
    assert sorted(seen) == sorted(ids) and len(seen) == 3
    assert "continuationToken" not in rest.json()
    only_a = await http.get(
        "/jobengine/jobs", params={"jobType": "a"}, headers={"X-Stella-Tenant": tenant}
    )
    assert {item["jobType"] for item in only_a.json()["items"]} == {"a"}

    summary = await http.get("/jobengine/jobs/summary", headers={"X-Stella-Tenant": tenant})
    assert summary.status_code == 200
    assert summary.headers["cache-control"] == CACHE
    document = summary.json()
    zero = {
        "queued": "0",
        "throttled": "0",
        "leased": "0",
        "succeeded": "0",
        "failed": "0",
        "canceled": "0",
        "deadLettered": "0",
        "total": "0",
    }  # int64 as JSON strings, zeros included
    assert document["totals"] == {**zero, "queued": "3", "total": "3"}
    assert [(t["jobType"], t["counts"]) for t in document["jobTypes"]] == [
        ("a", {**zero, "queued": "2", "total": "2"}),
        ("b", {**zero, "queued": "1", "total": "1"}),
    ]
    assert document["lastUpdatedAt"] == max(t["lastUpdatedAt"] for t in document["jobTypes"])
    cached = await http.get(
        "/jobengine/jobs/summary",
        headers={"X-Stella-Tenant": tenant, "If-None-Match": summary.headers["etag"]},
    )
    assert cached.status_code == 304

    for params, field in (
        ({"status": "done"}, "status"),
        ({"limit": "-1"}, "limit"),
        ({"continuationToken": "forged"}, "continuationToken"),
    ):
        bad = await http.get("/jobengine/jobs", params=params, headers={"X-Stella-Tenant": tenant})
        assert bad.status_code == 400, params
        assert _error(bad)[2] == [field]


async def test_unknown_job_is_404_and_finished_job_cannot_be_canceled(
    app: Application, http: httpx.AsyncClient, tenant: str, source_id: str
) -> None:
    for path in ("/jobengine/jobs/nope", "/jobengine/jobs/a%00b"):
        missing = await http.get(path, headers={"X-Stella-Tenant": tenant})
        assert missing.status_code == 404
        assert _error(missing)[0] == "NOT_FOUND"
    job_id = (await _enqueue(http, tenant, {"jobType": "x", "sourceId": source_id})).json()["jobId"]
    async with app.db.transaction() as session:
        await (await session.connection()).execute(
            sa.update(_jobs).where(_jobs.c.job_id == job_id).values(status="succeeded")
        )
    refused = await http.post(f"/jobengine/jobs/{job_id}/cancel", json={}, headers=_headers(tenant))
    assert refused.status_code == 409  # a conflict with the job's state (RFC 9110 §15.5.10)
    assert _error(refused) == (
        "FAILED_PRECONDITION",
        "job is succeeded; cannot cancel it",
        [],
        ["JOB_STATUS_CONFLICT"],
    )
    no_reason = await http.post(
        f"/jobengine/jobs/{job_id}/replay", json={}, headers={"X-Stella-Tenant": tenant}
    )
    assert no_reason.status_code == 400
    assert _error(no_reason)[2] == ["X-Stella-Operator-Reason"]


@pytest.mark.parametrize("bad", ["a\u0000b", "x" * 65, "sp ace", "ünï"])
async def test_a_source_id_no_source_can_have_is_not_found_not_sent_to_the_database(
    http: httpx.AsyncClient, tenant: str, source_id: str, bad: str
) -> None:
    # PostgreSQL refuses a NUL in text: such an id used to reach it and answer 500.
    single = await _enqueue(http, tenant, {"jobType": "b", "sourceId": bad})
    assert single.status_code == 404, single.text
    code, _, _, reasons = _error(single)
    assert (code, reasons) == ("NOT_FOUND", ["SOURCE_NOT_FOUND"])
    batch = await http.post(
        "/jobengine/jobs:batchEnqueue",
        json={"jobs": [{"jobType": "b", "sourceId": bad}, {"jobType": "b", "sourceId": source_id}]},
        headers=_headers(tenant),
    )
    assert batch.status_code == 200, batch.text
    missing, enqueued = batch.json()["results"]
    assert missing["status"]["code"] == 5
    assert missing["status"]["details"][0]["reason"] == "SOURCE_NOT_FOUND"
    assert enqueued["created"] is True

"""What the proxy methods do with their upstreams (upstream_proxy_service.proto):
validate the request, call, check and reshape the answers. Paths under each base URL:

- doc store: POST {DOC_STORE_URL}/documents (not retried), audited "documents.save";
- reporting: POST {REPORTING_URL}/reports/generate | /reports/life-of-ticket |
  /reports/pr_confidence by kind (generate not retried, the reads retried); the demo's
  POST /reports/generate {"kind": "summary"} and POST /reports/log_analysis;
- analyzer: POST {SECURE_ANALYZER_URL}/suggest then /summarize (both retried).

Strings that go to an upstream as fields of their own hold no control characters
(RFC 5234 CTL, as POST /ingest refuses them): one-line values (a report format, a
keyword) none at all, texts (content, keyword_document) none but tab and line breaks.
A refusal names every bad field at once and nothing is sent.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.text import has_control
from server.domain import audit
from server.domain.context import CallContext
from server.domain.errors import InvalidArgument, UpstreamFailed, Violation, echo, shown
from server.domain.resources import ResourceType
from server.domain.units import Store
from server.upstreams import Upstreams
from server.upstreams.client import trace_headers

REPORT_PATHS: Mapping[str, str] = {
    "generate": "/reports/generate",
    "life_of_ticket": "/reports/life-of-ticket",
    "pr_confidence": "/reports/pr_confidence",
}
IDEMPOTENT_REPORTS = frozenset({"life_of_ticket", "pr_confidence"})
FORMAT_MAX = 32
DEMO_FORMATS = ("json",)
LOG_LIMIT_DEFAULT = 50
LOG_LIMIT_MAX = 1000
INT32_MAX = 2**31 - 1
CONTROL = "must not contain control characters"
TEXT_CONTROL = "must not contain control characters other than tab and line breaks"
_TEXT_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # CTL but HT, LF, CR


@dataclass(frozen=True, slots=True)
class SavedDocument:
    """An accepted save: the doc store's answer and the id it gave (or "-")."""

    document_id: str
    size_bytes: int
    answer: Any


DOCUMENT: ResourceType[SavedDocument] = ResourceType(
    singular="document",
    collection="documents",
    id_field="documentId",
    id_of=lambda saved: saved.document_id,
    snapshot=lambda saved: {"documentId": saved.document_id, "sizeBytes": saved.size_bytes},
)


def _headers(call: CallContext) -> dict[str, str]:
    return trace_headers(call.trace_id, call.tenant_id)


async def save_document(
    upstreams: Upstreams,
    store: Store,
    call: CallContext,
    document: Mapping[str, Any],
    *,
    deadline_s: float | None = None,
) -> SavedDocument:
    """POST the document to the doc store, then audit the save (its own short unit of
    work: no transaction is held while the doc store is awaited)."""
    answer = await upstreams.docstore.post_json(
        "/documents", document, headers=_headers(call), deadline_s=deadline_s
    )
    found = answer.get("id") if isinstance(answer, dict) else None
    document_id = str(found) if isinstance(found, (str, int)) and str(found) else "-"
    size = len(json.dumps(document, separators=(",", ":")).encode())
    saved = SavedDocument(document_id=document_id[:200], size_bytes=size, answer=answer)
    async with store.transaction() as uow:
        await audit.record(uow, call, DOCUMENT, before=None, after=saved)
    return saved


async def request_report(
    upstreams: Upstreams,
    call: CallContext,
    *,
    kind: str,
    report_format: str,
    payload: Mapping[str, Any],
    deadline_s: float | None = None,
) -> Any:
    """The reporting service's answer to the kind's path, payload plus "format"."""
    path = REPORT_PATHS.get(kind)
    violations: list[Violation] = []
    if path is None:
        violations.append(
            Violation("kind", f"must be one of {', '.join(REPORT_PATHS)}, got {shown(kind)}")
        )
    if len(report_format) > FORMAT_MAX:
        violations.append(Violation("format", f"must be at most {FORMAT_MAX} characters"))
    elif has_control(report_format):
        violations.append(Violation("format", CONTROL))
    effective = report_format or "json"
    given = payload.get("format", effective)
    if given != effective and not any(v.field == "format" for v in violations):
        given_json = json.dumps(given, ensure_ascii=False)
        violations.append(
            Violation(
                "payload.format",
                f"is {echo(given_json)}, but the report's format is {json.dumps(effective)} "
                '(format, "json" when empty): set format instead',
            )
        )
    if violations or path is None:
        raise InvalidArgument.from_violations(violations)
    body = {**payload, "format": effective}
    return await upstreams.reporting.post_json(
        path,
        body,
        idempotent=kind in IDEMPOTENT_REPORTS,
        headers=_headers(call),
        deadline_s=deadline_s,
    )


@dataclass(frozen=True, slots=True)
class Summarization:
    suggestion: Any
    result: Any
    policy_override: bool
    providers: list[dict[str, str]] | None


async def suggest_summarization(
    upstreams: Upstreams,
    call: CallContext,
    *,
    content: str,
    keywords: Sequence[str],
    keyword_document: str,
    override_policy: bool,
    deadline_s: float | None = None,
) -> Summarization:
    """The analyzer's suggestion, then the summary asked of the providers it allows."""
    violations: list[Violation] = []
    if not content.strip():
        violations.append(Violation("content", "is required: the text to summarize"))
    elif _TEXT_CONTROL.search(content):
        violations.append(Violation("content", TEXT_CONTROL))
    violations += [
        Violation(f"keywords[{index}]", CONTROL)
        for index, keyword in enumerate(keywords)
        if has_control(keyword)
    ]
    if _TEXT_CONTROL.search(keyword_document):
        violations.append(Violation("keyword_document", TEXT_CONTROL))
    if violations:
        raise InvalidArgument.from_violations(violations)
    headers = _headers(call)
    analyzer = upstreams.analyzer
    suggestion = await analyzer.post_json(
        "/suggest",
        {
            "content": content,
            "keywords": list(keywords) or None,
            "keyword_document": keyword_document or None,
        },
        idempotent=True,
        headers=headers,
        deadline_s=deadline_s,
    )
    providers = None if override_policy else _providers(suggestion)
    result = await analyzer.post_json(
        "/summarize",
        {
            "content": content,
            "providers": providers,
            "override_policy": override_policy,
            "keywords": list(keywords) or None,
            "keyword_document": keyword_document or None,
        },
        idempotent=True,
        headers=headers,
        deadline_s=deadline_s,
    )
    return Summarization(suggestion, result, override_policy, providers)


def _providers(suggestion: Any) -> list[dict[str, str]]:
    models = suggestion.get("allowed_models", []) if isinstance(suggestion, dict) else None
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise _garbage(
            "POST /suggest of the analyzer service (SECURE_ANALYZER_URL) answered no JSON "
            "object with allowed_models as a list of strings"
        )
    return [{"name": model} for model in models]


# --- the demo bundle (seed 002) -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogLine:
    service: str
    level: str
    message: str


@dataclass(frozen=True, slots=True)
class DemoBundle:
    total: int
    by_severity: dict[str, int]
    log_count: int
    by_level: dict[str, int]
    sample: list[LogLine]


async def run_demo(
    upstreams: Upstreams,
    call: CallContext,
    *,
    demo_format: str,
    log_limit: int,
    deadline_s: float | None = None,
) -> DemoBundle:
    """The summary and the log analysis, asked of the reporting service at once."""
    report_format = demo_format or "json"
    if report_format not in DEMO_FORMATS:
        raise InvalidArgument.of("format", f"must be json, got {shown(demo_format)}")
    if not 0 <= log_limit <= LOG_LIMIT_MAX:
        raise InvalidArgument.of("log_limit", f"must be 0..{LOG_LIMIT_MAX}, got {log_limit}")
    limit = log_limit or LOG_LIMIT_DEFAULT
    headers = _headers(call)
    reporting = upstreams.reporting
    summary, logs = await asyncio.gather(
        reporting.post_json(
            "/reports/generate",
            {"kind": "summary", "format": report_format},
            idempotent=True,
            headers=headers,
            deadline_s=deadline_s,
        ),
        reporting.post_json(
            "/reports/log_analysis",
            {"format": report_format, "limit": limit},
            idempotent=True,
            headers=headers,
            deadline_s=deadline_s,
        ),
    )
    where = "POST /reports/generate (summary) of the reporting service (REPORTING_URL)"
    summary = _object(summary, where, "the answer")
    where_logs = "POST /reports/log_analysis of the reporting service (REPORTING_URL)"
    logs = _object(logs, where_logs, "the answer")
    overview = _object(logs.get("overview"), where_logs, "overview")
    sample = logs.get("sample")
    if not isinstance(sample, list):
        raise _garbage(f"{where_logs} answered no list sample")
    return DemoBundle(
        total=_count(summary.get("total"), where, "total"),
        by_severity=_counts(summary.get("by_severity"), where, "by_severity"),
        log_count=_count(overview.get("count"), where_logs, "overview.count"),
        by_level=_counts(overview.get("by_level"), where_logs, "overview.by_level"),
        sample=[_line(item, where_logs, i) for i, item in enumerate(sample[:limit])],
    )


def _garbage(message: str) -> UpstreamFailed:
    return UpstreamFailed(message, reason="UPSTREAM_GARBAGE", metadata={"upstream": "reporting"})


def _object(value: Any, where: str, member: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _garbage(f"{where} answered no JSON object as {member}")
    return value


def _count(value: Any, where: str, member: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= INT32_MAX:
        raise _garbage(f"{where} answered no count 0..{INT32_MAX} as {member}")
    return value


def _counts(value: Any, where: str, member: str) -> dict[str, int]:
    found = _object(value, where, member)
    return {str(key): _count(count, where, f"{member}.{key}") for key, count in found.items()}


def _line(item: Any, where: str, index: int) -> LogLine:
    member = f"sample[{index}]"
    line = _object(item, where, member)
    values = [line.get(name) for name in ("service", "level", "message")]
    strings = [value for value in values if isinstance(value, str)]
    if len(strings) != len(values):
        raise _garbage(f"{where} answered {member} without string service, level and message")
    return LogLine(*strings)

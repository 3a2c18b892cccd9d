"""This product's HTTP surface: what the product-neutral gateway (gateway/) is told
about Orchestrator, in one place.

- which request headers travel to the server as metadata (`X-Stella-*`, legacy
  `X-StellaOps-*`) and which metadata returns as a header (the trace id);
- what the OpenAPI documents say about callers: the OAuth 2.0 token endpoint
  (client credentials, RFC 6749 §4.4, optionally DPoP-bound, RFC 9449), and per
  method, from its policy options (server/policy.py), whether it needs a token,
  the scopes, the tenancy and operator-audit headers and the role permissions;
- the CORS headers browsers may send and read besides the gateway's own.

The in-process gateway (`gateway_config`, server/app.py) and `orchestrator gateway`
(`proxy_config`, `cors_rules`, server/cli.py) both use it, so the two answer alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor

from gateway.app import GatewayConfig
from gateway.cors import CorsRules
from gateway.errors import GatewayError
from gateway.metadata import DEFAULT_EXPOSE, HeaderRules
from gateway.openapi_config import DocumentedHeader, OpenApiConfig, OperationSecurity
from gateway.openapi_schema import LIST_RULES, character_class, duration_pattern
from gateway.text import CONTROL_CHARACTERS
from orchestrator.api.v1 import options_pb2
from orchestrator.identity.v1 import oauth_pb2
from orchestrator.jobengine.v1 import (
    audit_service_pb2,
    backfills_service_pb2,
    deadletter_service_pb2,
    job_pb2,
    jobs_service_pb2,
    pack_run_pb2,
    pack_runs_service_pb2,
    quota_pb2,
    quotas_service_pb2,
    source_pb2,
    sources_service_pb2,
)
from orchestrator.mesh.v1 import events_service_pb2, registry_service_pb2, workflows_service_pb2
from orchestrator.orchestra.v1 import (
    definition_pb2,
    definitions_service_pb2,
    orchestra_service_pb2,
)
from server import errors
from server.config import Settings
from server.domain import backfills, deadletter, ingestion, jobs, pack_runs, registry, schedules
from server.domain.audit import FILTER_MAX
from server.domain.event_feed import FILTER_MAX as EVENT_FILTER_MAX
from server.domain.events import EVENT_TYPES
from server.domain.fingerprint import PATTERN as FINGERPRINT_PATTERN
from server.domain.leasing import CODE_MAX
from server.domain.orchestra.records import INSTANCE_STATUSES
from server.domain.orchestra.validation import DEFINITION_ID_PATTERN
from server.domain.quotas import PAUSE_REASON_MAX, REFILL_MIN, QuotaPolicy
from server.domain.sources import NAME_MAX, SOURCE_TYPE_PATTERN
from server.identity.authorization_server.oauth2 import GRANT_TYPE
from server.identity.resource_server.principal import TokenRejected
from server.identity.resource_server.verifier import parse_authorization
from server.identity.urls import TOKEN_PATH
from server.interceptors.audit import REASON_HEADER, REASON_MAX, TICKET_HEADER, TICKET_MAX
from server.interceptors.tenancy import (
    IDENTIFIER_PATTERN,
    LEGACY_TENANT_HEADER,
    PROJECT_HEADER,
    TENANT_HEADER,
)
from server.interceptors.tracing import TRACE_HEADER
from server.policy import declares_policy, method_policy
from server.services.quotas import policy_of
from server.services.tracing import field_rules as tracing_field_rules

# Lower-case prefixes of the request headers the server reads (tenancy, project,
# operator audit, trace id), plus the gateway's explicit `Grpc-Metadata-` escape.
FORWARD_PREFIXES: Final = ("x-stella-", "x-stellaops-", "grpc-metadata-")


def _canonical(name: str) -> str:
    return "-".join(part[:1].upper() + part[1:] for part in name.split("-"))


def _identifier() -> dict[str, Any]:
    """A tenant or project id, by the pattern server/interceptors/tenancy.py checks; an
    empty value is read as no header at all."""
    return {
        "anyOf": [
            {"type": "string", "pattern": IDENTIFIER_PATTERN},
            {"type": "string", "maxLength": 0},
        ]
    }


# HTTP delivers header values without surrounding whitespace (RFC 9110 §5.5) and the
# gateway percent-encodes a value holding a tab or any octet beyond printable ASCII
# (gateway/metadata.py), so the server's "not blank" (server/interceptors/audit.py)
# is, over HTTP, "has a character other than space and tab".
_NOT_BLANK: Final = r"[^ \t]"
_AS_RECEIVED: Final = (
    "Lengths count the value as the server receives it: one with a tab or non-ASCII "
    "octets arrives percent-encoded (RFC 3986 §2.1), `%` included."
)

TRACE_ID: Final = DocumentedHeader(_canonical(TRACE_HEADER), description="The call's trace id.")
TENANT_HEADERS: Final = (
    DocumentedHeader(
        TENANT_HEADER,
        description=(
            "The tenant the call acts for. A token bound to one tenant needs none, and one "
            "sent must name that tenant (else 403 `TENANT_FORBIDDEN`); an operator's token "
            "must name one of its tenants (400 `TENANT_REQUIRED` without it). "
            f"`{LEGACY_TENANT_HEADER}` is its deprecated name; an empty value is none."
        ),
        schema=_identifier(),
    ),
    DocumentedHeader(
        PROJECT_HEADER,
        description=(
            "Narrows the call to one project of the tenant: what is created is tagged "
            "with it, what is read outside it is absent. An empty value is none."
        ),
        schema=_identifier(),
    ),
)
AUDIT_HEADERS: Final = (
    DocumentedHeader(
        REASON_HEADER,
        required=True,
        description=f"Why the operator makes this change; kept in the audit trail. {_AS_RECEIVED}",
        schema={"type": "string", "minLength": 1, "maxLength": REASON_MAX, "pattern": _NOT_BLANK},
    ),
    DocumentedHeader(
        TICKET_HEADER,
        description=(
            f"The change ticket, if any; kept in the audit trail. An empty value is none. "
            f"{_AS_RECEIVED}"
        ),
        schema={"type": "string", "maxLength": TICKET_MAX},
    ),
)


# What str.strip() removes: the domain's "no surrounding blanks" (server/domain/sources.py).
_BLANKS: Final = frozenset(chr(code) for code in range(0x10000) if chr(code).isspace())
_NOT_CONTROL: Final = character_class(CONTROL_CHARACTERS, negated=True)
_EDGE: Final = character_class(CONTROL_CHARACTERS | _BLANKS, negated=True)
_EDGE_NOT_SLASH: Final = character_class(CONTROL_CHARACTERS | _BLANKS | {"/"}, negated=True)


def _finite(minimum: float, maximum: float) -> dict[str, Any]:
    """A double within [minimum, maximum]: a number, never NaN or an infinity (which
    proto3 JSON writes as strings), as the domain's math.isfinite checks say."""
    return {"type": "number", "format": "double", "minimum": minimum, "maximum": maximum}


def _field_rules(policy: QuotaPolicy) -> dict[str, dict[str, Any]]:
    """The domain's checks of field values (server/domain/), as JSON Schema keywords by
    the field's full name: built from the constants and patterns those checks use
    (quota maxima from the server's `policy`)."""
    register = sources_service_pb2.RegisterSourceRequest.DESCRIPTOR
    list_sources = sources_service_pb2.ListSourcesRequest.DESCRIPTOR
    list_audit = audit_service_pb2.ListAuditEntriesRequest.DESCRIPTOR
    list_jobs = jobs_service_pb2.ListJobsRequest.DESCRIPTOR
    list_quotas = quotas_service_pb2.ListQuotasRequest.DESCRIPTOR
    job = job_pb2.Job.DESCRIPTOR
    backoff = job_pb2.Backoff.DESCRIPTOR
    quota = quota_pb2.Quota.DESCRIPTOR
    token = oauth_pb2.TokenRequest.DESCRIPTOR
    source_type: dict[str, Any] = {"pattern": SOURCE_TYPE_PATTERN}
    # 0 is the default page size; larger than MAX_LIMIT is coerced, not refused.
    page_size: dict[str, Any] = {"minimum": 0}
    rules: dict[FieldDescriptor, dict[str, Any]] = {
        register.fields_by_name["name"]: {
            "minLength": 1,
            "maxLength": NAME_MAX,
            "pattern": f"^{_EDGE}(?:{_NOT_CONTROL}*{_EDGE})?$",
        },
        register.fields_by_name["source_type"]: source_type,
        list_sources.fields_by_name["source_type"]: source_type,
        list_sources.fields_by_name["limit"]: page_size,
        list_audit.fields_by_name["limit"]: page_size,
        # Job types are the slugs source types are (jobs.validate_job_type).
        list_jobs.fields_by_name["job_type"]: source_type,
        list_jobs.fields_by_name["limit"]: page_size,
        list_jobs.fields_by_name["status"]: {"enum": list(jobs.STATUSES)},
        list_jobs.fields_by_name["source_id"]: {"pattern": jobs.ID_PATTERN},
        list_quotas.fields_by_name["job_type"]: source_type,
        list_quotas.fields_by_name["limit"]: page_size,
        job.fields_by_name["job_type"]: source_type,
        job.fields_by_name["priority"]: {
            "minimum": jobs.PRIORITY_MIN,
            "maximum": jobs.PRIORITY_MAX,
        },
        # 0 is the default (MAX_ATTEMPTS_DEFAULT).
        job.fields_by_name["max_attempts"]: {"minimum": 0, "maximum": jobs.MAX_ATTEMPTS_MAX},
        job.fields_by_name["pack_run_id"]: {"pattern": jobs.ID_PATTERN},
        job.fields_by_name["idempotency_key"]: {
            "minLength": 1,
            "maxLength": jobs.IDEMPOTENCY_KEY_MAX,
            "pattern": f"^{_NOT_CONTROL}*{_EDGE}{_NOT_CONTROL}*$",
        },
        backoff.fields_by_name["max_delay"]: {
            "pattern": duration_pattern(int(jobs.BACKOFF_MAX_LIMIT_S), positive=True)
        },
        # At most maxDelay, too: a rule between two fields, stated in prose.
        backoff.fields_by_name["initial_delay"]: {
            "pattern": duration_pattern(int(jobs.BACKOFF_MAX_LIMIT_S))
        },
        # 0 is the default (BACKOFF_MULTIPLIER_DEFAULT).
        backoff.fields_by_name["multiplier"]: {
            "anyOf": [
                {"const": 0},
                _finite(jobs.BACKOFF_MULTIPLIER_MIN, jobs.BACKOFF_MULTIPLIER_MAX),
            ]
        },
        backoff.fields_by_name["jitter"]: {"anyOf": [_finite(0, 1)]},
        quota.fields_by_name["job_type"]: source_type,
        quota.fields_by_name["max_active"]: {"minimum": 0, "maximum": policy.max_active},
        quota.fields_by_name["max_per_hour"]: {"minimum": 0, "maximum": policy.max_per_hour},
        quota.fields_by_name["burst"]: {"minimum": 1, "maximum": policy.burst},
        quota.fields_by_name["refill_per_second"]: {
            "anyOf": [
                {"type": "number", "const": 0},
                _finite(REFILL_MIN, policy.refill_per_second),
            ]
        },
        quotas_service_pb2.PauseQuotaRequest.DESCRIPTOR.fields_by_name["reason"]: {
            "maxLength": PAUSE_REASON_MAX,
            "pattern": f"^{_NOT_CONTROL}*$",
        },
        # The one grant served (RFC 6749 §4.4); any other is 400 unsupported_grant_type.
        token.fields_by_name["grant_type"]: {"enum": [GRANT_TYPE]},
    }
    for field in list_audit.fields:
        if field.json_name in FILTER_MAX:
            rules[field] = {
                "maxLength": FILTER_MAX[field.json_name],
                "pattern": f"^{_NOT_CONTROL}*$",
            }
    rules.update(_event_rules())
    rules.update(_pack_run_rules())
    rules.update(_backfill_rules())
    rules.update(_deadletter_rules())
    rules.update(_registry_rules())
    rules.update(_orchestra_rules())
    rules.update(_upstream_rules())
    rules.update(_workflow_rules())
    rules.update(_cross_service_job_rules())
    rules.update(tracing_field_rules())
    return {field.full_name: rule for field, rule in rules.items()}


def _upstream_rules() -> dict[FieldDescriptor, dict[str, Any]]:
    """The upstream proxies' checks (server/upstreams/proxy.py): report kinds and
    format, non-blank summarization content, no control characters (texts: but tab
    and line breaks), the demo's format and log limit. That a payload's "format"
    equals the report's is a rule between two fields (prose)."""
    from orchestrator.mesh.v1 import upstream_proxy_service_pb2 as upstream
    from server.upstreams import proxy

    report = upstream.RequestReportRequest.DESCRIPTOR
    demo = upstream.RunDemoRequest.DESCRIPTOR
    suggest = upstream.SuggestSummarizationRequest.DESCRIPTOR
    text = character_class(CONTROL_CHARACTERS - {"\t", "\n", "\r"}, negated=True)
    return {
        report.fields_by_name["kind"]: {"enum": list(proxy.REPORT_PATHS)},
        report.fields_by_name["format"]: {
            "maxLength": proxy.FORMAT_MAX,
            "pattern": f"^{_NOT_CONTROL}*$",
        },
        suggest.fields_by_name["content"]: {"minLength": 1, "pattern": f"^{text}*{_EDGE}{text}*$"},
        suggest.fields_by_name["keywords"]: {"pattern": f"^{_NOT_CONTROL}*$"},
        suggest.fields_by_name["keyword_document"]: {"pattern": f"^{text}*$"},
        demo.fields_by_name["format"]: {"enum": ["", *proxy.DEMO_FORMATS]},
        demo.fields_by_name["log_limit"]: {"minimum": 0, "maximum": proxy.LOG_LIMIT_MAX},
    }


def _orchestra_rules() -> dict[FieldDescriptor, dict[str, Any]]:
    """Orchestra's checks (server/domain/orchestra/): `variables` is a JSON object (seed
    004; a google.protobuf.Value so that null is refused, not read as absent), page
    sizes and versions are not negative, definition ids have their pattern."""
    start = orchestra_service_pb2.StartProcessRequest.DESCRIPTOR
    signal = orchestra_service_pb2.SignalTokenRequest.DESCRIPTOR
    listing = definitions_service_pb2.ListDefinitionsRequest.DESCRIPTOR
    get = definitions_service_pb2.GetDefinitionRequest.DESCRIPTOR
    put = definitions_service_pb2.PutDefinitionRequest.DESCRIPTOR
    definition = definition_pb2.ProcessDefinition.DESCRIPTOR
    return {
        start.fields_by_name["variables"]: {"type": "object"},
        signal.fields_by_name["variables"]: {"type": "object"},
        listing.fields_by_name["limit"]: {"minimum": 0},
        listing.fields_by_name["definition_id"]: {"pattern": f"^$|{DEFINITION_ID_PATTERN}"},
        get.fields_by_name["version"]: {"minimum": 0},
        get.fields_by_name["definition_id"]: {"pattern": DEFINITION_ID_PATTERN},
        put.fields_by_name["definition_id"]: {"pattern": DEFINITION_ID_PATTERN},
        # In a put's body null is as absent: the path's id, the next version (as 0), a
        # definition shared by every tenant.
        definition.fields_by_name["id"]: {"type": ["string", "null"]},
        definition.fields_by_name["version"]: {"type": ["integer", "null"], "minimum": 0},
        definition.fields_by_name["tenant"]: {"type": ["string", "null"]},
    }


def _workflow_rules() -> dict[FieldDescriptor, dict[str, Any]]:
    """The mesh ingestion and workflows' checks (server/domain/ingestion.py,
    workflows.py): the known sources, scope and correlation id lengths without control
    characters, run statuses, definition ids (empty: any, or the shipped one) and page
    sizes. That a definition exists is a rule of the server's state (404, prose)."""
    ingest = workflows_service_pb2.IngestRequest.DESCRIPTOR
    run = workflows_service_pb2.RunWorkflowRequest.DESCRIPTOR
    listing = workflows_service_pb2.ListWorkflowsRequest.DESCRIPTOR
    history = workflows_service_pb2.ListWorkflowRunsRequest.DESCRIPTOR
    optional_id = {"pattern": f"^$|{DEFINITION_ID_PATTERN}"}
    return {
        ingest.fields_by_name["source"]: {"enum": list(ingestion.KNOWN_SOURCES)},
        ingest.fields_by_name["scope"]: {
            "maxLength": ingestion.SCOPE_MAX,
            "pattern": f"^{_NOT_CONTROL}*$",
        },
        ingest.fields_by_name["correlation_id"]: {
            "maxLength": ingestion.CORRELATION_ID_MAX,
            "pattern": f"^{_NOT_CONTROL}*$",
        },
        run.fields_by_name["definition_id"]: optional_id,
        run.fields_by_name["variables"]: {"type": "object"},
        listing.fields_by_name["limit"]: {"minimum": 0},
        history.fields_by_name["limit"]: {"minimum": 0},
        history.fields_by_name["definition_id"]: optional_id,
        history.fields_by_name["status"]: {"enum": ["", *INSTANCE_STATUSES]},
    }


def _cross_service_job_rules() -> dict[FieldDescriptor, dict[str, Any]]:
    """The cross-service jobs' checks (server/domain/cross_service_jobs.py): lengths,
    no control characters, not blank when given; document ids and channels per item
    and per list; the message may hold line breaks; priorities as a job's."""
    from orchestrator.mesh.v1 import cross_service_jobs_service_pb2 as cross
    from server.domain import cross_service_jobs as rules_of

    optional = f"^(?:{_NOT_CONTROL}*{_EDGE}{_NOT_CONTROL}*)?$"
    message_text = character_class(CONTROL_CHARACTERS - {"\t", "\n", "\r"}, negated=True)
    found: dict[FieldDescriptor, dict[str, Any]] = {}
    for request in (cross.RecalcQualityRequest, cross.NotifyConsolidationRequest):
        fields = request.DESCRIPTOR.fields_by_name
        found[fields["scope"]] = {"maxLength": rules_of.SCOPE_MAX, "pattern": optional}
        found[fields["correlation_id"]] = {
            "maxLength": rules_of.CORRELATION_ID_MAX,
            "pattern": optional,
        }
        found[fields["idempotency_key"]] = {
            "maxLength": jobs.IDEMPOTENCY_KEY_MAX,
            "pattern": optional,
        }
        found[fields["priority"]] = {"minimum": jobs.PRIORITY_MIN, "maximum": jobs.PRIORITY_MAX}
        found[fields["document_ids"]] = {
            "minLength": 1,
            "maxLength": rules_of.DOCUMENT_ID_MAX,
            "pattern": f"^{_NOT_CONTROL}*{_EDGE}{_NOT_CONTROL}*$",
            LIST_RULES: {"maxItems": rules_of.DOCUMENT_IDS_MAX},
        }
    notify = cross.NotifyConsolidationRequest.DESCRIPTOR.fields_by_name
    found[notify["message"]] = {"maxLength": rules_of.MESSAGE_MAX, "pattern": f"^{message_text}*$"}
    found[notify["channels"]] = {
        "pattern": rules_of.CHANNEL_PATTERN,
        LIST_RULES: {"maxItems": rules_of.CHANNELS_MAX, "uniqueItems": True},
    }
    return found


def _backfill_rules() -> dict[FieldDescriptor, dict[str, Any]]:
    """Schedules' and backfills' checks (server/domain/schedules.py, backfills.py): the
    schedule's cron length, misfire policies and job template as EnqueueJob checks a
    job; backfill scopes, reason and ticket lengths, page sizes and backfill ids. Cron
    syntax, time zones and window order are rules the schema cannot say (prose)."""
    schedule = source_pb2.Schedule.DESCRIPTOR
    template = source_pb2.JobTemplate.DESCRIPTOR
    create = backfills_service_pb2.CreateBackfillRequest.DESCRIPTOR
    listing = backfills_service_pb2.ListBackfillsRequest.DESCRIPTOR
    slug = {"pattern": SOURCE_TYPE_PATTERN}
    source_id = {"pattern": jobs.ID_PATTERN}
    rules: dict[FieldDescriptor, dict[str, Any]] = {
        schedule.fields_by_name["cron"]: {
            "minLength": 1,
            "maxLength": schedules.CRON_MAX,
            "pattern": f"^{_NOT_CONTROL}*{_EDGE}{_NOT_CONTROL}*$",
        },
        schedule.fields_by_name["misfire_policy"]: {"enum": ["", *schedules.MISFIRE_POLICIES]},
        template.fields_by_name["job_type"]: slug,
        template.fields_by_name["priority"]: {
            "minimum": jobs.PRIORITY_MIN,
            "maximum": jobs.PRIORITY_MAX,
        },
        template.fields_by_name["max_attempts"]: {"minimum": 0, "maximum": jobs.MAX_ATTEMPTS_MAX},
        create.fields_by_name["source_id"]: source_id,
        create.fields_by_name["job_type"]: slug,
        create.fields_by_name["reason"]: {
            "maxLength": backfills.REASON_MAX,
            "pattern": f"^{_NOT_CONTROL}*$",
        },
        create.fields_by_name["ticket"]: {
            "maxLength": backfills.TICKET_MAX,
            "pattern": f"^{_NOT_CONTROL}*$",
        },
        listing.fields_by_name["limit"]: {"minimum": 0},
        listing.fields_by_name["source_id"]: source_id,
        listing.fields_by_name["job_type"]: slug,
    }
    for request in (
        backfills_service_pb2.GetBackfillRequest,
        backfills_service_pb2.CancelBackfillRequest,
    ):
        rules[request.DESCRIPTOR.fields_by_name["backfill_id"]] = source_id
    return rules


def _deadletter_rules() -> dict[FieldDescriptor, dict[str, Any]]:
    """The dead-letter API's checks (server/domain/deadletter.py): entry statuses,
    categories as slugs (the job types' alphabet), error codes' length, job types, source
    ids, 16-hex-digit fingerprints, page sizes and entry ids. A batch's size (1 to
    BATCH_MAX ids) and failedBefore after failedAfter are said in prose."""
    listing = deadletter_service_pb2.ListDeadLetterEntriesRequest.DESCRIPTOR
    pending = deadletter_service_pb2.ReplayPendingDeadLetterEntriesRequest.DESCRIPTOR
    entry_id = {"pattern": jobs.ID_PATTERN}
    rules: dict[FieldDescriptor, dict[str, Any]] = {
        listing.fields_by_name["status"]: {"enum": list(deadletter.STATUSES)},
        deadletter_service_pb2.ReplayDeadLetterEntryRequest.DESCRIPTOR.fields_by_name[
            "entry_id"
        ]: entry_id,
        # each entry
        deadletter_service_pb2.BatchReplayDeadLetterEntriesRequest.DESCRIPTOR.fields_by_name[
            "entry_ids"
        ]: entry_id,
    }
    for message in (listing, pending):
        fields = message.fields_by_name
        rules[fields["category"]] = {"pattern": SOURCE_TYPE_PATTERN}
        rules[fields["error_code"]] = {"maxLength": CODE_MAX, "pattern": f"^{_NOT_CONTROL}*$"}
        rules[fields["job_type"]] = {"pattern": SOURCE_TYPE_PATTERN}
        rules[fields["source_id"]] = {"pattern": jobs.ID_PATTERN}
        rules[fields["fingerprint"]] = {"pattern": FINGERPRINT_PATTERN.pattern}
        rules[fields["limit"]] = {"minimum": 0}  # 0 is the default; larger ones are capped
    return rules


# An absolute http(s) URL without credentials, spaces or control characters, whose port
# (if any) is 1-65535, as registry.url_problem takes it; a host of RFC 3986 reg-name
# characters (an IP literal, which the server takes too, is left to prose).
_PORT: Final = (
    "(?::(?:0*(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}"
    "|655[0-2][0-9]|6553[0-5]))?)?"
)
_HTTP_URL: Final = f"[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9._~!$&'()*+,;=%-]+{_PORT}(?:[/?#]{_EDGE}*)?"


def _registry_rules() -> dict[FieldDescriptor, dict[str, Any]]:
    """The service registry's checks (server/domain/registry.py): service names, base and
    OpenAPI URLs (absolute http(s), or for an OpenAPI URL a path on the base URL or none),
    versions, the listing's name prefix and page size, a replica batch's origin. URLs
    pointing at this server's own registry and metadata over METADATA_MAX_BYTES are
    said in prose."""
    service = registry_service_pb2.RegisteredService.DESCRIPTOR
    register = registry_service_pb2.RegisterServiceRequest.DESCRIPTOR
    listing = registry_service_pb2.ListServicesRequest.DESCRIPTOR
    url = {"maxLength": registry.URL_MAX, "pattern": f"^{_HTTP_URL}$"}
    rules: dict[FieldDescriptor, dict[str, Any]] = {
        listing.fields_by_name["name_prefix"]: {"maxLength": 64, "pattern": f"^{_NOT_CONTROL}*$"},
        listing.fields_by_name["limit"]: {"minimum": 0},
        # each entry; null is proto3 JSON's "unset" (gateway/json_parser.py): every service
        registry_service_pb2.PollOpenApiRequest.DESCRIPTOR.fields_by_name["names"]: {
            "pattern": registry.NAME_PATTERN,
            LIST_RULES: {"type": ["array", "null"]},
        },
        registry_service_pb2.ReplicateServicesRequest.DESCRIPTOR.fields_by_name["origin"]: {
            "pattern": jobs.ID_PATTERN
        },
        # null: an empty batch
        registry_service_pb2.ReplicateServicesRequest.DESCRIPTOR.fields_by_name["services"]: {
            LIST_RULES: {"type": ["array", "null"]}
        },
        # stored absolute (the registration's resolved URL), as a replica carries it
        service.fields_by_name["openapi_url"]: url,
        register.fields_by_name["openapi_url"]: {
            "type": ["string", "null"],  # null: none, as ""
            "maxLength": registry.URL_MAX,
            "pattern": f"^(?:|/(?:{_EDGE_NOT_SLASH}{_EDGE}*)?|{_HTTP_URL})$",
        },
    }
    for message in (service, register):
        # null is proto3 JSON's "unset" (gateway/json_parser.py): no metadata.
        rules[message.fields_by_name["metadata"]] = {"type": ["object", "null"]}
        rules[message.fields_by_name["name"]] = {"pattern": registry.NAME_PATTERN}
        rules[message.fields_by_name["base_url"]] = url
        rules[message.fields_by_name["version"]] = {
            "type": ["string", "null"],  # null: none, as ""
            "maxLength": registry.VERSION_MAX,
            "pattern": f"^{_NOT_CONTROL}*$",
        }
    return rules


def _pack_run_rules() -> dict[FieldDescriptor, dict[str, Any]]:
    """Pack runs' checks (server/domain/pack_runs.py): a pack's jobs as EnqueueJob checks
    a job (their backoff is job.proto's Backoff, ruled above), job names and dependsOn
    entries as slugs, the pack name, the listing's page size and status, run ids."""
    run = pack_run_pb2.PackRun.DESCRIPTOR
    pack_job = pack_run_pb2.PackJob.DESCRIPTOR
    listing = pack_runs_service_pb2.ListPackRunsRequest.DESCRIPTOR
    name = {"pattern": pack_runs.JOB_NAME_PATTERN}
    rules: dict[FieldDescriptor, dict[str, Any]] = {
        run.fields_by_name["pack_name"]: {
            "minLength": 1,
            "maxLength": pack_runs.PACK_NAME_MAX,
            "pattern": f"^{_NOT_CONTROL}*{_EDGE}{_NOT_CONTROL}*$",
        },
        pack_job.fields_by_name["name"]: name,
        pack_job.fields_by_name["depends_on"]: name,  # each entry
        pack_job.fields_by_name["job_type"]: {"pattern": SOURCE_TYPE_PATTERN},
        pack_job.fields_by_name["source_id"]: {"pattern": jobs.ID_PATTERN},
        pack_job.fields_by_name["priority"]: {
            "minimum": jobs.PRIORITY_MIN,
            "maximum": jobs.PRIORITY_MAX,
        },
        pack_job.fields_by_name["max_attempts"]: {"minimum": 0, "maximum": jobs.MAX_ATTEMPTS_MAX},
        listing.fields_by_name["limit"]: {"minimum": 0},
        listing.fields_by_name["status"]: {"enum": list(pack_runs.RUN_STATUSES)},
        listing.fields_by_name["pack_name"]: {
            "maxLength": pack_runs.PACK_NAME_MAX,
            "pattern": f"^{_NOT_CONTROL}*$",
        },
    }
    for request in (
        pack_runs_service_pb2.GetPackRunRequest,
        pack_runs_service_pb2.CancelPackRunRequest,
        pack_runs_service_pb2.RetryPackRunRequest,
    ):
        rules[request.DESCRIPTOR.fields_by_name["pack_run_id"]] = {"pattern": jobs.ID_PATTERN}
    return rules


def _event_rules() -> dict[FieldDescriptor, dict[str, Any]]:
    """The events API's checks (server/domain/event_feed.py): known event types, text
    filters' sizes, decimal event ids (up to 18 digits: all the server hands out)."""
    listing = events_service_pb2.ListEventsRequest.DESCRIPTOR
    watch = events_service_pb2.WatchEventsRequest.DESCRIPTOR
    replay = events_service_pb2.ReplayEventsRequest.DESCRIPTOR
    clear = events_service_pb2.ClearEventsRequest.DESCRIPTOR
    event_id = {"pattern": "^[0-9]{1,18}$"}
    rules: dict[FieldDescriptor, dict[str, Any]] = {
        listing.fields_by_name["limit"]: {"minimum": 0},
        watch.fields_by_name["after_event_id"]: {"pattern": "^([0-9]{1,18})?$"},
        replay.fields_by_name["from_event_id"]: event_id,
        replay.fields_by_name["to_event_id"]: event_id,
        # null is proto3 JSON's "unset": every tenant (operator) or the caller's own.
        clear.fields_by_name["tenant_id"]: {
            "type": ["string", "null"],
            "pattern": f"^({IDENTIFIER_PATTERN[1:-1]})?$",
        },
    }
    for message in (listing, watch):
        rules[message.fields_by_name["type"]] = {"enum": ["", *sorted(EVENT_TYPES)]}
        for field in message.fields:
            if field.json_name in EVENT_FILTER_MAX:
                rules[field] = {
                    "maxLength": EVENT_FILTER_MAX[field.json_name],
                    "pattern": f"^{_NOT_CONTROL}*$",
                }
    return rules


FIELD_RULES: Final = _field_rules(policy_of(Settings.model_construct()))


def field_rules(field: FieldDescriptor) -> Mapping[str, Any] | None:
    """OpenApiConfig.field_rules: the domain's checks of `field` (quota maxima at their
    defaults), None when it has none."""
    return FIELD_RULES.get(field.full_name)


def settings_field_rules(
    settings: Settings,
) -> Callable[[FieldDescriptor], Mapping[str, Any] | None]:
    """OpenApiConfig.field_rules with the quota maxima `settings` configures."""
    rules = _field_rules(policy_of(settings))
    return lambda field: rules.get(field.full_name)


def header_rules() -> HeaderRules:
    """The gateway's standard forwarding plus our prefixes; the trace id comes back
    as itself instead of `Grpc-Metadata-X-Stella-Trace-Id`."""
    return HeaderRules(
        forward_prefixes=FORWARD_PREFIXES, expose=DEFAULT_EXPOSE | {TRACE_HEADER.lower()}
    )


def describe_security(method: MethodDescriptor) -> OperationSecurity | None:
    """The OpenAPI view of the method's policy; None when it declares none (a proto
    that is not ours)."""
    if not declares_policy(method):
        return None
    policy = method_policy(method)
    headers = (
        *(TENANT_HEADERS if policy.tenant_mode == options_pb2.TENANT_MODE_HEADER else ()),
        *(AUDIT_HEADERS if policy.operator_audit else ()),
    )
    note = ""
    if policy.permissions:
        needs = ", ".join(f"`{p}`" for p in policy.permissions)
        note = f"Requires the role permission {needs}."
    if policy.tenant_mode == options_pb2.TENANT_MODE_PLATFORM:
        operators = "Platform level: needs an operator client (one bound to no tenant)."
        note = f"{note} {operators}".strip()
    return OperationSecurity(
        authenticated=policy.authenticated, scopes=policy.scopes, headers=headers, note=note
    )


# admission's per-method answer to "does it need a token?", by descriptor, worked out
# on the first request for the method (the options never change while serving).
_NEEDS_TOKEN: dict[MethodDescriptor, bool] = {}


def admission(method: MethodDescriptor, headers: Mapping[str, str]) -> GatewayError | None:
    """GatewayConfig.admission: a method whose policy needs a token, called without
    credentials (no Authorization, a blank one, or a scheme but Bearer and DPoP), is
    answered 401 with the challenges of both schemes before the gateway reads its
    body and query (RFC 6750 §3.1, RFC 9449 §7.1), as the server's authentication
    interceptor answers it over gRPC: the same `parse_authorization` and refusal, as
    the same status and trailers. Tokens are never verified here; a malformed value
    of an accepted scheme goes on to the interceptor."""
    needs_token = _NEEDS_TOKEN.get(method)
    if needs_token is None:
        needs_token = declares_policy(method) and method_policy(method).authenticated
        _NEEDS_TOKEN[method] = needs_token
    if not needs_token:
        return None
    value = headers.get("authorization")
    if value is not None and (value[:7].lower() == "bearer " or value[:5].lower() == "dpop "):
        # parse_authorization's scheme ends at the first space: a Bearer or DPoP value
        # is never its 401, whatever follows (a malformed one is the server's 400).
        return None
    try:
        parse_authorization(value)
    except TokenRejected as rejected:
        if rejected.status != 401:
            return None
        status = errors.to_status(rejected.to_domain_error())
        trailers = header_rules().response_headers(errors.status_trailers(status))
        return GatewayError(status, headers=dict(trailers), from_upstream=True)
    return None


def openapi_config(settings: Settings | None = None) -> OpenApiConfig:
    """What the documents say about callers and field values; quota maxima from
    `settings` (their defaults without)."""
    return OpenApiConfig(
        describe_security=describe_security,
        token_url=TOKEN_PATH,
        dpop=True,
        response_headers=(TRACE_ID,),
        field_rules=field_rules if settings is None else settings_field_rules(settings),
    )


def gateway_config(settings: Settings, comments: Mapping[str, str]) -> GatewayConfig:
    """The in-process gateway's configuration: body limit and proxy trust from
    `settings`, OpenAPI descriptions from `comments` (proto comments by full name)."""
    return GatewayConfig(
        max_body_bytes=settings.max_request_body_bytes,
        trust_forwarded_headers=settings.trust_forwarded_headers,
        comments=comments,
        headers=header_rules(),
        openapi=openapi_config(settings),
        admission=admission,
    )


def proxy_config() -> GatewayConfig:
    """`orchestrator gateway`'s base configuration (the command line sets the rest)."""
    return GatewayConfig(headers=header_rules(), openapi=openapi_config(), admission=admission)


def cors_rules() -> CorsRules:
    """The gateway's CORS headers plus ours; origins come from the command line."""
    trace = TRACE_ID.name
    allow = (
        TENANT_HEADER,
        LEGACY_TENANT_HEADER,
        PROJECT_HEADER,
        trace,
        REASON_HEADER,
        TICKET_HEADER,
    )
    return CorsRules().with_headers(allow=allow, expose=(trace,))

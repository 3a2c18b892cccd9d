"""What a method's HTTP options (gateway/v1/http.proto) amount to for the gateway.

Read once per method at start-up through the one options reader
(gateway/options.py): the service's `http_defaults.defaults` refined by the
method's `http`, with presence. The service's `deprecated_prefixes` are read here
too; gateway/bindings.py synthesizes the legacy twin bindings from them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from gateway.options import OptionKind, effective_options, read_extension
from gateway.v1 import http_pb2

HTTP_OPTIONS: Final = OptionKind(
    method=http_pb2.http, service=http_pb2.http_defaults, defaults=lambda s: s.defaults
)


@dataclass(frozen=True, slots=True)
class HttpBehavior:
    success_status: int = 200
    cache_control: str | None = None
    etag: bool = False
    error_status: dict[int, int] = field(default_factory=dict)  # google.rpc code -> HTTP
    allow_unknown_query: bool = False
    allow_unknown_body: bool = False  # top-level body members naming no field are ignored
    error_cache_control: str | None = None
    deprecated_prefixes: tuple[tuple[str, str], ...] = ()  # (legacy prefix, successor)
    oauth_errors: bool = False  # RFC 6749 error bodies instead of the status shape
    etag_field: str | None = None  # the AIP-154 etag field (gateway/conditional.py)
    precondition_required: bool = False  # 428 without If-Match or etag (RFC 6585 §3)
    created_field: str | None = None  # a bool response field; false answers 200 (AIP-133)
    sse_id_field: str | None = None  # a string response field: each SSE event's `id:`
    last_event_id_field: str | None = None  # a string request field Last-Event-ID sets


def http_behavior(method: MethodDescriptor) -> HttpBehavior:
    """The method's effective HTTP behaviour; defaults for a proto without our options."""
    merged = effective_options(method, HTTP_OPTIONS)
    service = read_extension(method.containing_service.GetOptions(), http_pb2.http_defaults)
    return HttpBehavior(
        success_status=merged.success_status or 200,
        cache_control=merged.cache_control or None,
        etag=merged.etag,
        error_status={item.code: item.status for item in merged.error_status},
        allow_unknown_query=merged.allow_unknown_query_parameters,
        allow_unknown_body=merged.allow_unknown_body_fields,
        error_cache_control=merged.error_cache_control or None,
        oauth_errors=merged.error_format == http_pb2.ERROR_FORMAT_OAUTH,
        deprecated_prefixes=deprecated_prefixes(service),
        etag_field=merged.etag_field or None,
        precondition_required=merged.precondition_required,
        created_field=merged.created_field or None,
        sse_id_field=merged.sse_id_field or None,
        last_event_id_field=merged.last_event_id_field or None,
    )


def deprecated_prefixes(
    service: http_pb2.ServiceHttpBehavior | None,
) -> tuple[tuple[str, str], ...]:
    """(legacy prefix, successor prefix) pairs, trailing `/` removed."""
    if service is None:
        return ()
    return tuple(
        (item.prefix.rstrip("/"), item.successor.rstrip("/"))
        for item in service.deprecated_prefixes
    )


def owned_prefixes(services: Iterable[ServiceDescriptor]) -> tuple[tuple[str, HttpBehavior], ...]:
    """(prefix, behaviour) for every `owned_prefixes` entry of `services`, longest prefix
    first: the error behaviour (the service's `http_defaults.defaults` alone) of a
    request under the prefix that no binding answers (gateway/app.py)."""
    owned: list[tuple[str, HttpBehavior]] = []
    for service in services:
        options = read_extension(service.GetOptions(), http_pb2.http_defaults)
        if options is None or not options.owned_prefixes:
            continue
        defaults = options.defaults
        behavior = HttpBehavior(
            error_status={item.code: item.status for item in defaults.error_status},
            error_cache_control=defaults.error_cache_control or None,
            oauth_errors=defaults.error_format == http_pb2.ERROR_FORMAT_OAUTH,
        )
        owned += [(prefix, behavior) for prefix in options.owned_prefixes if prefix]
    return tuple(sorted(owned, key=lambda item: len(item[0]), reverse=True))

"""Our HTTP behaviour options, read from any descriptor pool.

A foreign proto simply has none of them and gets the defaults. Descriptors built
from a FileDescriptorSet live in their own pool, where our extension may be an
unknown field; re-parsing the serialized options against the generated options
class (whose pool knows the extension) recovers it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message

from orchestrator.api.v1 import options_pb2


@dataclass(frozen=True, slots=True)
class HttpBehavior:
    success_status: int = 200
    cache_control: str | None = None
    etag: bool = False
    error_status: dict[int, int] = field(default_factory=dict)  # google.rpc code -> HTTP
    allow_unknown_query: bool = False
    error_cache_control: str | None = None
    deprecated_prefixes: tuple[tuple[str, str], ...] = ()  # (legacy prefix, successor)
    oauth_errors: bool = False  # RFC 6749 error bodies instead of the status shape


def _extension(options: Message, ext: Any, options_cls: type[Message]) -> Any:
    try:
        if options.HasExtension(ext):
            return options.Extensions[ext]
    except KeyError:
        pass
    reparsed = options_cls.FromString(options.SerializeToString())
    return reparsed.Extensions[ext] if reparsed.HasExtension(ext) else None


def http_rule(method: MethodDescriptor) -> http_pb2.HttpRule | None:
    rule = _extension(method.GetOptions(), annotations_pb2.http, descriptor_pb2.MethodOptions)
    return rule if isinstance(rule, http_pb2.HttpRule) or rule is None else _copy_rule(rule)


def _copy_rule(rule: Message) -> http_pb2.HttpRule:
    return http_pb2.HttpRule.FromString(rule.SerializeToString())


def _merge(
    base: options_pb2.HttpBehavior, own: options_pb2.HttpBehavior | None
) -> options_pb2.HttpBehavior:
    merged = options_pb2.HttpBehavior()
    merged.CopyFrom(base)
    if own is not None:
        merged.MergeFrom(own)  # scalars: set values win; repeated overrides append
    return merged


def http_behavior(service: ServiceDescriptor, method: MethodDescriptor) -> HttpBehavior:
    service_opts = _extension(
        service.GetOptions(), options_pb2.http_defaults, descriptor_pb2.ServiceOptions
    )
    defaults = service_opts.defaults if service_opts is not None else options_pb2.HttpBehavior()
    own = _extension(method.GetOptions(), options_pb2.http, descriptor_pb2.MethodOptions)
    merged = _merge(defaults, own)
    return HttpBehavior(
        success_status=merged.success_status or 200,
        cache_control=merged.cache_control or None,
        etag=merged.etag,
        error_status={item.code: item.status for item in merged.error_status},
        allow_unknown_query=merged.allow_unknown_query_parameters,
        error_cache_control=merged.error_cache_control or None,
        oauth_errors=merged.error_format == options_pb2.ERROR_FORMAT_OAUTH,
        deprecated_prefixes=tuple(
            (p.prefix.rstrip("/"), p.successor.rstrip("/"))
            for p in (service_opts.deprecated_prefixes if service_opts is not None else ())
        ),
    )

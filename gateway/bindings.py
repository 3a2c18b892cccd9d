"""Descriptors -> bindings: one `Binding` per HttpRule, additional_bindings flattened,
and the legacy twins of a service's `deprecated_prefixes` synthesized.

Legacy twins: for a service whose `http_defaults` lists `{prefix: "/v0", successor:
"/v1"}`, every binding of its methods under `/v1` (primary rule or additional
binding) is also served under `/v0`, with the same method, body and response body.
The twins follow the method's own rules, numbered after them (`index`); the
gateway answers them with `Deprecation`/`Link` headers and OpenAPI marks them
deprecated. A rule that writes such a twin by hand is refused.

Every problem a rule can have is found here, at start-up, and reported naming the
service, the method and the template: bad grammar, path variables that name a
missing, repeated, map or message field, body or response_body fields that do not
exist, a client- or bidi-streaming method with no `body` to stream its requests
from. A gateway that starts serves every rule it was given.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from google.api import http_pb2
from google.protobuf.descriptor import (
    Descriptor,
    FieldDescriptor,
    MethodDescriptor,
    ServiceDescriptor,
)

from gateway.behavior import HttpBehavior, http_behavior
from gateway.options import http_rule
from gateway.template import Template, TemplateError, parse_template

_VERBS = ("get", "put", "post", "delete", "patch")


class BindingError(ValueError):
    def __init__(self, method: MethodDescriptor, template: str, reason: str) -> None:
        super().__init__(f"{method.full_name} ({template}): {reason}")
        self.method = method.full_name
        self.template = template
        self.reason = reason


@dataclass(frozen=True, slots=True)
class PathParam:
    path: tuple[str, ...]  # proto field names from the template
    fields: tuple[FieldDescriptor, ...]


@dataclass(frozen=True, slots=True)
class Binding:
    service: ServiceDescriptor
    method: MethodDescriptor
    index: int  # 0 for the primary rule, 1.. for additional_bindings
    http_method: str
    template: Template
    path_params: tuple[PathParam, ...]
    body: FieldDescriptor | None  # the named body field
    body_all: bool  # body: "*"
    response_body: FieldDescriptor | None
    behavior: HttpBehavior

    @property
    def full_method(self) -> str:
        return f"/{self.service.full_name}/{self.method.name}"

    @property
    def server_streaming(self) -> bool:
        return bool(self.method.server_streaming)

    @property
    def client_streaming(self) -> bool:
        """Client- or bidi-streaming: the requests are a stream, read from the body."""
        return bool(self.method.client_streaming)

    @property
    def deprecated_successor(self) -> tuple[str, str] | None:
        """(legacy prefix, successor prefix) when this binding lives under a deprecated prefix."""
        for prefix, successor in self.behavior.deprecated_prefixes:
            source = self.template.source
            if source == prefix or source.startswith(prefix + "/"):
                return prefix, successor
        return None


def bindings_for(services: Iterable[ServiceDescriptor]) -> Iterator[Binding]:
    for service in services:
        for method in service.methods:
            rule = http_rule(method)
            if rule is None:
                continue
            behavior = http_behavior(method)
            rules = [rule, *rule.additional_bindings]
            written: list[Binding] = []
            for index, one in enumerate(rules):
                if index and one.additional_bindings:
                    raise BindingError(method, _pattern(one)[1], "nested additional_bindings")
                written.append(_binding(service, method, index, one, behavior))
            yield from written
            yield from _legacy_twins(written, rules, behavior)


def _legacy_twins(
    written: list[Binding], rules: list[http_pb2.HttpRule], behavior: HttpBehavior
) -> Iterator[Binding]:
    """The binding under each legacy prefix of every binding under its successor."""
    taken = {(b.http_method, b.template.source) for b in written}
    index = len(written)
    for binding, rule in zip(written, rules, strict=True):
        source = binding.template.source
        for prefix, successor in behavior.deprecated_prefixes:
            if source != successor and not source.startswith(successor + "/"):
                continue
            legacy = prefix + source[len(successor) :]
            if (binding.http_method, legacy) in taken:
                raise BindingError(
                    binding.method,
                    legacy,
                    f"served as the legacy twin of {source} (deprecated_prefixes); "
                    "remove the hand-written binding",
                )
            yield _binding(
                binding.service, binding.method, index, _with_path(rule, legacy), behavior
            )
            index += 1


def _with_path(rule: http_pb2.HttpRule, path: str) -> http_pb2.HttpRule:
    """`rule` (without its additional_bindings) under another path template."""
    copy = http_pb2.HttpRule()
    copy.CopyFrom(rule)
    copy.ClearField("additional_bindings")
    kind = copy.WhichOneof("pattern")
    if kind == "custom":
        copy.custom.path = path
    elif kind is not None:
        setattr(copy, kind, path)
    return copy


def _pattern(rule: http_pb2.HttpRule) -> tuple[str, str]:
    kind = rule.WhichOneof("pattern")
    if kind is None:
        return "", ""
    if kind == "custom":
        return rule.custom.kind.upper(), rule.custom.path
    if kind in _VERBS:
        return kind.upper(), str(getattr(rule, kind))
    return kind.upper(), ""


def _binding(
    service: ServiceDescriptor,
    method: MethodDescriptor,
    index: int,
    rule: http_pb2.HttpRule,
    behavior: HttpBehavior,
) -> Binding:
    http_method, source = _pattern(rule)
    if not http_method or not source:
        raise BindingError(method, source, "rule has no HTTP method and path")
    try:
        template = parse_template(source)
    except TemplateError as exc:
        raise BindingError(method, source, str(exc)) from exc
    request = method.input_type
    params = tuple(_path_param(method, source, request, path) for path in template.field_paths())
    body_all = rule.body == "*"
    if method.client_streaming and not rule.body:
        # The body is where a request stream comes from (gateway/json_stream.py).
        raise BindingError(
            method, source, 'a client-streaming method needs a body ("*" or a field) for its stream'
        )
    body = (
        None
        if body_all or not rule.body
        else _top_field(method, source, request, rule.body, "body")
    )
    response_body = (
        _top_field(method, source, method.output_type, rule.response_body, "response_body")
        if rule.response_body
        else None
    )
    return Binding(
        service=service,
        method=method,
        index=index,
        http_method=http_method,
        template=template,
        path_params=params,
        body=body,
        body_all=body_all,
        response_body=response_body,
        behavior=behavior,
    )


def _path_param(
    method: MethodDescriptor, source: str, message: Descriptor, path: tuple[str, ...]
) -> PathParam:
    fields: list[FieldDescriptor] = []
    current: Descriptor | None = message
    for depth, name in enumerate(path):
        field = current.fields_by_name.get(name) if current is not None else None
        dotted = ".".join(path)
        if field is None:
            raise BindingError(method, source, f"path variable {dotted!r} names no field")
        if field.is_repeated:
            kind = "map" if _is_map(field) else "repeated"
            raise BindingError(method, source, f"path variable {dotted!r} names a {kind} field")
        last = depth == len(path) - 1
        if last and field.type == FieldDescriptor.TYPE_MESSAGE:
            raise BindingError(method, source, f"path variable {dotted!r} names a message field")
        fields.append(field)
        current = field.message_type
    return PathParam(path=path, fields=tuple(fields))


def _top_field(
    method: MethodDescriptor, source: str, message: Descriptor, name: str, role: str
) -> FieldDescriptor:
    field = message.fields_by_name.get(name)
    if field is None:
        raise BindingError(method, source, f"{role} {name!r} names no field of {message.full_name}")
    return field


def _is_map(field: FieldDescriptor) -> bool:
    message = field.message_type
    return message is not None and message.GetOptions().map_entry

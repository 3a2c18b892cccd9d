"""Where a request's data goes, for OpenAPI: the path, its variables, query parameters
and headers.

Each rule mirrors the module that applies it: path templates (gateway/template.py,
decoded by gateway/router.py), query parameters (gateway/query.py: dotted proto or
JSON names, repetition, `m[key]`, fields not bound by path or body), If-None-Match
where the gateway answers ETags to a GET, If-Match where it carries one to the
request's etag field (gateway/conditional.py), and the headers the API's owner says
its server reads (`OperationSecurity.headers`, gateway/openapi_config.py).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote

from google.api import field_behavior_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from gateway.bindings import Binding
from gateway.conditional import IF_MATCH, EtagPlan, etag_plan
from gateway.openapi_config import DocumentedHeader, OperationSecurity
from gateway.openapi_schema import (
    WELL_KNOWN,
    Comments,
    Schema,
    SchemaRegistry,
    field_behaviors,
    is_leaf_message,
    map_value,
)
from gateway.response import BODILESS
from gateway.template import DeepWildcard, Literal, Segment, Wildcard

MAX_QUERY_DEPTH: Final = 3
# JSON-scalar well-known types; gateway/scalars.py also parses Struct/Value/ListValue
# from JSON text, which OpenAPI cannot describe as one query value.
_QUERY_WKT: Final = frozenset(WELL_KNOWN) - {
    "google.protobuf.Struct",
    "google.protobuf.Value",
    "google.protobuf.ListValue",
    "google.protobuf.Empty",
    "google.protobuf.Any",
}
_REGEX_SPECIAL = re.compile(r"([\\^$.|?*+()\[\]{}/])")


@dataclass(frozen=True, slots=True)
class PathVar:
    name: str  # as written in the OpenAPI path: dotted JSON names
    segments: tuple[Segment, ...]
    fields: tuple[FieldDescriptor, ...]  # () for a bare `*` or `**`


def openapi_path(binding: Binding) -> tuple[str, list[PathVar]]:
    """`/v1/{name=shelves/*}/kitchens:list` -> `/v1/{name}/kitchens:list` and its variables.

    A bare `*` or `**` outside any variable becomes a `wildcardN` parameter: OpenAPI
    has no anonymous path segments.
    """
    template = binding.template
    fields = {param.path: param.fields for param in binding.path_params}
    starts = {variable.start: variable for variable in template.variables}
    parts: list[str] = []
    variables: list[PathVar] = []
    index = 0
    while index < len(template.segments):
        segment, variable = template.segments[index], starts.get(index)
        if variable is not None:
            path = fields[variable.field_path]
            segments = template.segments[variable.start : variable.end]
            variables.append(PathVar(".".join(f.json_name for f in path), segments, path))
            index = variable.end
        elif isinstance(segment, Literal):
            parts.append(segment.value)
            index += 1
            continue
        else:
            variables.append(PathVar(f"wildcard{len(variables) + 1}", (segment,), ()))
            index += 1
        parts.append("{" + variables[-1].name + "}")
    verb = f":{template.verb}" if template.verb else ""
    return "/" + "/".join(parts) + verb, variables


def segment_pattern(segments: Sequence[Segment]) -> str | None:
    """An ECMA-262 regex for a multi-segment variable (None for a single `*`).

    `**` needs one segment at least here: with none, the OpenAPI path would end in `/`,
    which the router does not match.
    """
    if len(segments) == 1 and isinstance(segments[0], Wildcard):
        return None
    parts: list[str] = []
    for segment in segments:
        if isinstance(segment, Literal):
            parts.append(_REGEX_SPECIAL.sub(r"\\\1", unquote(segment.value)))
        else:
            parts.append("[^/]+(?:/[^/]+)*" if isinstance(segment, DeepWildcard) else "[^/]+")
    return "^" + "/".join(parts) + "$"


def path_parameter(
    variable: PathVar, name: str, registry: SchemaRegistry, comments: Comments
) -> dict[str, Any]:
    """`name` differs from `variable.name` when the path item is shared (see openapi.py)."""
    leaf = variable.fields[-1] if variable.fields else None
    schema: Schema = (
        {"type": "string"} if leaf is None else registry.ruled(leaf, registry.single(leaf))
    )
    notes = [comments.get(leaf.full_name, "")] if leaf is not None else []
    pattern = segment_pattern(variable.segments)
    if pattern is not None:
        schema = {"type": "string", "pattern": pattern}
        written = "/".join(_segment_text(s) for s in variable.segments)
        notes.append(f"Matches `{written}`; its `/` are sent unescaped.")
    elif schema.get("type") == "string":
        schema["minLength"] = 1  # `*` never matches an empty segment
    if not variable.fields:
        notes.append("Any value; bound to no field.")
    elif name != variable.name:
        notes.append(f"Sets `{variable.name}`.")
    return parameter(name, "path", schema, required=True, notes=notes)


def query_parameters(
    binding: Binding, registry: SchemaRegistry, comments: Comments
) -> Iterator[dict[str, Any]]:
    """None for `body: "*"`: the gateway answers 400 to any query parameter there."""
    if binding.body_all:
        return
    bound = [param.path for param in binding.path_params]
    if binding.body is not None:
        bound.append((binding.body.name,))
    for path in _query_paths(binding.method.input_type, frozenset(bound), (), MAX_QUERY_DEPTH):
        name = ".".join(f.json_name for f in path)
        proto_name = ".".join(f.name for f in path)
        notes = [comments.get(path[-1].full_name, "")]
        if proto_name != name:
            notes.append(f"Also accepted as `{proto_name}`.")
        required = all(_REQUIRED in field_behaviors(f) for f in path)
        schema, style = _query_schema(path[-1], registry)
        if not required:
            # gateway/query.py leaves a field given once with an empty value unset.
            style["allowEmptyValue"] = True
            notes.append("An empty value is the same as none.")
        yield parameter(name, "query", schema, style, required, notes)


def header_parameters(
    binding: Binding,
    security: OperationSecurity | None,
    registry: SchemaRegistry | None = None,
) -> Iterator[dict[str, Any]]:
    """If-None-Match where a GET answers ETags, If-Match where the request carries an
    etag field (required where the method requires a precondition), Last-Event-ID where
    a stream resumes from it (`last_event_id_field`), then the headers `security` names
    (a required one may not be empty)."""
    plan = etag_plan(binding)
    if binding.http_method == "GET" and answers_etag(binding, plan):
        yield parameter("If-None-Match", "header", {"type": "string"})
    if plan is not None and plan.request is not None:
        note = (
            "The resource's ETag (strong; weak tags never match) or `*`; its value goes "
            f"into `{plan.request_name}`. A mismatch is answered 412."
        )
        required = plan.required
        schema: Schema = {"type": "string", "minLength": 1} if required else {"type": "string"}
        yield parameter(IF_MATCH, "header", schema, required=required, notes=[note])
    resume = binding.behavior.last_event_id_field
    if resume is not None:
        field = binding.method.input_type.fields_by_name[resume]
        note = (
            "Sent by an EventSource reconnecting (`Accept: text/event-stream`): the `id:` "
            f"of the last event it received; sets `{field.json_name}`, over the query."
        )
        # The field's own schema (the owner's rules included): the header is its value.
        schema = registry.field(field) if registry is not None else {"type": "string"}
        yield parameter("Last-Event-ID", "header", schema, notes=[note])
    for header in security.headers if security is not None else ():
        yield parameter(
            header.name,
            "header",
            header_schema(header),
            required=header.required,
            notes=[header.description],
        )


def header_schema(header: DocumentedHeader) -> Schema:
    """The owner's schema of the value; else any string, non-empty when required."""
    if header.schema is not None:
        return copy.deepcopy(dict(header.schema))
    return {"type": "string", "minLength": 1} if header.required else {"type": "string"}


def answers_etag(binding: Binding, plan: EtagPlan | None) -> bool:
    """Whether successes carry an ETag: the response resource's etag field, or a hash
    of a body (gateway/app.py)."""
    if plan is not None and plan.response is not None:
        return True
    return binding.behavior.etag and binding.behavior.success_status not in BODILESS


def parameter(
    name: str,
    where: str,
    schema: Schema,
    style: dict[str, Any] | None = None,
    required: bool = False,
    notes: Iterable[str] = (),
) -> dict[str, Any]:
    result: dict[str, Any] = {"name": name, "in": where}
    text = " ".join(filter(None, notes))
    if text:
        result["description"] = text
    if required:
        result["required"] = True
    result["schema"] = schema
    result.update(style or {})
    return result


_REQUIRED: Final = field_behavior_pb2.REQUIRED


def _query_paths(
    message: Descriptor,
    bound: frozenset[tuple[str, ...]],
    prefix: tuple[FieldDescriptor, ...],
    depth: int,
) -> Iterator[tuple[FieldDescriptor, ...]]:
    """Scalars, enums, repeated ones, maps of them and JSON-scalar WKTs, through singular
    messages up to `depth` names; a field at a `bound` proto path is not a parameter."""
    for field in sorted(message.fields, key=lambda f: f.number):
        path = (*prefix, field)
        if tuple(f.name for f in path) in bound:
            continue
        target = map_value(field) or field
        if target.message_type is None or target.message_type.full_name in _QUERY_WKT:
            yield path
        elif depth > 1 and (nested := _plain_message(field)) is not None:
            yield from _query_paths(nested, bound, path, depth - 1)


def _plain_message(field: FieldDescriptor) -> Descriptor | None:
    """The type of a singular message field whose own fields are addressable."""
    message = field.message_type
    plain = message is not None and not field.is_repeated and not is_leaf_message(message)
    return message if plain else None


def _query_schema(leaf: FieldDescriptor, registry: SchemaRegistry) -> tuple[Schema, dict[str, Any]]:
    """A map is `m[key]=v` (deepObject); a repeated field repeats (form, exploded)."""
    value = map_value(leaf)
    if value is not None:
        schema = {"type": "object", "additionalProperties": _unwrapped(registry.single(value))}
        return schema, {"style": "deepObject", "explode": True}
    single = registry.ruled(leaf, _unwrapped(registry.single(leaf)))
    return ({"type": "array", "items": single} if leaf.is_repeated else single), {}


def _unwrapped(schema: Schema) -> Schema:
    """A wrapper in a query is present or absent, never `null`."""
    options = schema.get("anyOf", [])
    if len(options) == 2 and options[1] == {"type": "null"}:
        return dict(options[0])
    return schema


def _segment_text(segment: Segment) -> str:
    if isinstance(segment, Literal):
        return segment.value
    return "**" if isinstance(segment, DeepWildcard) else "*"

"""Bindings -> OpenAPI 3.1 documents: path items, operations, bodies, responses and
security, read from the protos (google.api.http and the gateway's options) and, for
who may call what, from the API owner's `OpenApiConfig` (gateway/openapi_config.py).

A pure function of the same `Binding`s that route requests, build them and write
responses, so the document cannot drift from what the gateway serves. Schemas are
gateway/openapi_schema.py; paths and parameters gateway/openapi_params.py.

Rules worth knowing:
- Templates of one shape (`/v1/kitchens/{id}`, `/v1/kitchens/{kitchen.id}`) share one
  path item under the first binding's names, because OpenAPI forbids `/a/{x}` beside
  `/a/{y}`; a renamed parameter says which field it sets. Two rules that still
  collide (`/v1/{name=a/*}` and `/v1/{name}`, both GET) keep the first and list the
  other under the document's `x-unrepresentable`.
- A custom HTTP method (`custom: {kind: "SEARCH"}`) has no field in a 3.1 path item;
  it goes under `x-additionalOperations`, as OpenAPI 3.2's `additionalOperations`.
- Error responses list what the gateway's one status table can answer for any call
  (ERROR_STATUSES), 413/415 where a body is read, 412 (and 428 where required)
  where If-Match reaches an etag field, and the method's overrides.
- A bodiless success (204, 205, 304: gateway/response.py) has no `content`; an ETag
  header is documented where one is answered: the resource's etag field (gateway/
  conditional.py) or a hash of the body.
- Links (OpenAPI 3.1 §4.8.20) say where a created resource's id goes next: from each
  success response of an operation whose body has a scalar field F that its path does
  not take, to every operation whose path continues the first's collection path
  (its path without a `:verb`) and takes F as a path variable, with
  `F: $response.body#/F` (and any variable of the first path as `$request.path.…`).
  So `POST /v1/kitchens` answering `{"kitchenId": …}` links to `GET`, `DELETE`,
  `POST …:close` on `/v1/kitchens/{kitchenId}`; a legacy twin links to its own
  prefix's twins, because its paths continue only theirs.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Final

from google.api import field_behavior_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor, ServiceDescriptor

from gateway.bindings import Binding
from gateway.conditional import EtagPlan, etag_plan
from gateway.openapi_config import DocumentedHeader, OpenApiConfig, OperationSecurity
from gateway.openapi_params import (
    PathVar,
    answers_etag,
    header_parameters,
    openapi_path,
    path_parameter,
    query_parameters,
)
from gateway.openapi_schema import (
    ERROR_SCHEMA,
    HTTP_BODY,
    OAUTH_ERROR_SCHEMA,
    Comments,
    SchemaRegistry,
    component_names,
    field_behaviors,
    reachable,
)
from gateway.response import BODILESS, strong_etag

OPENAPI_VERSION: Final = "3.1.0"
DOCUMENT_PATH: Final = "/openapi.json"
DISCOVERY_PATH: Final = "/.well-known/openapi"
ERROR_STATUSES: Final = (400, 401, 403, 404, 409, 429, 500, 503)
BODY_STATUSES: Final = (413, 415)  # too large; neither JSON nor (where offered) a form
FORM_TYPE: Final = "application/x-www-form-urlencoded"
_ERROR, _OAUTH_ERROR = "Error", "OAuthError"
_METHODS: Final = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_VERSION = re.compile(r"^v\d+(?:(?:alpha|beta)\d*)?$")
# The response headers the gateway itself writes on legacy twins (gateway/response.py).
_DEPRECATION_HEADERS: Final[dict[str, Any]] = {
    "Deprecation": {"required": True, "schema": {"type": "string", "const": "true"}},
    "Link": {
        "required": True,
        "description": 'The same path under the successor prefix, `rel="successor-version"`.',
        "schema": {"type": "string"},
    },
}


def build_document(
    bindings: Iterable[Binding],
    *,
    title: str,
    version: str,
    servers: Sequence[str] | None = None,
    comments: Comments | None = None,
    config: OpenApiConfig | None = None,
) -> dict[str, Any]:
    """One OpenAPI 3.1 document for `bindings`, the same for the same input."""
    bindings = list(bindings)
    roots = [t for b in bindings for t in (b.method.input_type, b.method.output_type)]
    names = component_names(reachable(roots).values(), reserved=(_ERROR, _OAUTH_ERROR))
    config = config or OpenApiConfig()
    registry = SchemaRegistry(names, comments, config.field_rules)
    builder = _Builder(registry, comments or {}, config)
    for binding in bindings:
        builder.add(binding)
    builder.link()
    document: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": version},
    }
    if servers:
        document["servers"] = [{"url": url} for url in servers]
    document["tags"] = _tags((b.service for b in bindings), comments or {})
    document["paths"] = {path: builder.paths[path] for path in sorted(builder.paths)}
    document["components"] = builder.components()
    if builder.unrepresentable:
        document["x-unrepresentable"] = builder.unrepresentable
    return document


def api_name(service: ServiceDescriptor) -> str:
    """The package component before the version: `acme.billing.v1` -> `billing`."""
    parts = service.file.package.split(".") if service.file.package else []
    versions = [i for i, part in enumerate(parts) if i > 0 and _VERSION.match(part)]
    if versions:
        return parts[versions[-1] - 1]
    return parts[-1] if parts else service.name.lower()


def documents_by_api(
    bindings: Iterable[Binding],
    *,
    comments: Comments | None = None,
    config: OpenApiConfig | None = None,
) -> dict[str, dict[str, Any]]:
    """One document per API name (see `api_name`), in name order."""
    groups: dict[str, list[Binding]] = {}
    for binding in bindings:
        groups.setdefault(api_name(binding.service), []).append(binding)
    return {
        name: build_document(
            group, title=f"{name} API", version=_version(group), comments=comments, config=config
        )
        for name, group in sorted(groups.items())
    }


class Documents:
    """What the gateway serves, as bytes with strong ETags, built on the first lookup."""

    def __init__(
        self,
        bindings: Sequence[Binding],
        *,
        comments: Comments | None = None,
        config: OpenApiConfig | None = None,
    ) -> None:
        self._bindings = bindings
        self._comments = comments
        self._config = config
        self._served: dict[str, tuple[bytes, str]] | None = None

    def lookup(self, path: str) -> tuple[bytes, str] | None:
        """(body, ETag) for a document path, None for any other path (nothing is built)."""
        per_api = path.startswith("/openapi/") and path.endswith(".json")
        if not per_api and path not in (DOCUMENT_PATH, DISCOVERY_PATH):
            return None
        if self._served is None:
            self._served = {p: _encoded(d) for p, d in self._documents().items()}
        return self._served.get(path)

    def _documents(self) -> dict[str, Mapping[str, Any]]:
        version = _version(self._bindings)
        everything = build_document(
            self._bindings,
            title="HTTP API",
            version=version,
            comments=self._comments,
            config=self._config,
        )
        per_api = documents_by_api(self._bindings, comments=self._comments, config=self._config)
        urls = {name: f"/openapi/{name}.json" for name in per_api}
        apis = [{"name": name, "url": url} for name, url in urls.items()]
        served: dict[str, Mapping[str, Any]] = {
            DOCUMENT_PATH: everything,
            DISCOVERY_PATH: {"openapi": DOCUMENT_PATH, "apis": apis},
        }
        served.update({urls[name]: document for name, document in per_api.items()})
        return served


def _encoded(document: Mapping[str, Any]) -> tuple[bytes, str]:
    body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
    return body, strong_etag(body)


def _version(bindings: Iterable[Binding]) -> str:
    found = {part for b in bindings for part in b.service.file.package.split(".")}
    return ", ".join(sorted(p for p in found if _VERSION.match(p))) or "0"


def _tags(services: Iterable[ServiceDescriptor], comments: Comments) -> list[dict[str, str]]:
    tags: dict[str, dict[str, str]] = {}
    for service in services:
        tag = {"name": service.name}
        if service.full_name in comments:
            tag["description"] = comments[service.full_name]
        tags.setdefault(service.name, tag)
    return [tags[name] for name in sorted(tags)]


class _Builder:
    """Accumulates path items, and the scopes and components their operations use."""

    def __init__(self, registry: SchemaRegistry, comments: Comments, config: OpenApiConfig) -> None:
        self.registry = registry
        self.comments = comments
        self.config = config
        self._response_headers = {h.name: _response_header(h) for h in config.response_headers}
        self.paths: dict[str, dict[str, Any]] = {}
        self.unrepresentable: list[str] = []
        self._shapes: dict[str, str] = {}  # `/a/{}` -> the path first seen with that shape
        self._scopes: set[str] = set()
        self._secured = False
        self._responses: dict[str, Any] = {}
        self._headers: set[str] = set()
        self._linkable: list[_Linkable] = []

    def add(self, binding: Binding) -> None:
        path, variables = openapi_path(binding)
        key = self._shapes.setdefault(re.sub(r"\{[^}]*\}", "{}", path), path)
        item = self.paths.setdefault(key, {})
        slot = binding.http_method.lower()
        if slot not in _METHODS:
            item = item.setdefault("x-additionalOperations", {})
            slot = binding.http_method
        if slot in item:
            rule = f"{binding.http_method} {binding.template.source}"
            self.unrepresentable.append(f"{rule} ({binding.method.full_name})")
            return
        names = re.findall(r"\{([^}]*)\}", key)
        operation = self._operation(binding, variables, names)
        item[slot] = operation
        verb = f":{binding.template.verb}" if binding.template.verb else ""
        self._linkable.append(
            _Linkable(
                operation=operation,
                collection=key.removesuffix(verb),
                variables=tuple(names),
                body_fields=_body_fields(binding),
                target=slot in _METHODS,
            )
        )

    def link(self) -> None:
        """Add the links (see the module docstring) once every operation is known."""
        for source in self._linkable:
            produced = [f for f in source.body_fields if f not in source.variables]
            if not produced:
                continue
            links: dict[str, Any] = {}
            for target in self._linkable:
                parameters = _link_parameters(source, target, produced)
                if parameters is not None:
                    links[target.operation["operationId"]] = {
                        "operationId": target.operation["operationId"],
                        "parameters": parameters,
                    }
            if not links:
                continue
            for status, response in source.operation["responses"].items():
                if status.startswith("2") and "content" in response:
                    response["links"] = dict(sorted(links.items()))

    def components(self) -> dict[str, Any]:
        components: dict[str, Any] = {"schemas": self.registry.components()}
        if self._responses:
            components["responses"] = dict(sorted(self._responses.items()))
        if self._headers:
            known = {**self._response_headers, **_DEPRECATION_HEADERS}
            components["headers"] = {name: known[name] for name in sorted(self._headers)}
        if self._secured:
            components["securitySchemes"] = _security_schemes(self.config, sorted(self._scopes))
        return components

    def _operation(
        self, binding: Binding, variables: list[PathVar], names: list[str]
    ) -> dict[str, Any]:
        suffix = f"_{binding.index}" if binding.index else ""
        operation: dict[str, Any] = {
            "operationId": f"{binding.service.name}_{binding.method.name}{suffix}",
            "tags": [binding.service.name],
        }
        security = self.config.describe_security(binding.method)
        operation.update(self._texts(binding, security))
        parameters = [
            *(
                path_parameter(variable, name, self.registry, self.comments)
                for variable, name in zip(variables, names, strict=True)
            ),
            *query_parameters(binding, self.registry, self.comments),
            *header_parameters(binding, security, self.registry),
        ]
        if parameters:
            operation["parameters"] = parameters
        body = self._request_body(binding)
        if body is not None:
            operation["requestBody"] = body
        operation["responses"] = self._operation_responses(binding)
        if binding.deprecated_successor is not None:
            operation["deprecated"] = True
        if security is not None:
            operation["security"] = self._security(security)
        return operation

    def _texts(self, binding: Binding, security: OperationSecurity | None) -> dict[str, str]:
        comment = self.comments.get(binding.method.full_name, "")
        summary = comment.split("\n\n", 1)[0].replace("\n", " ")
        texts = {"summary": summary or binding.method.name}
        if security is not None and security.note:
            comment = f"{comment}\n\n{security.note}".strip()
        if comment:
            texts["description"] = comment
        return texts

    def _security(self, security: OperationSecurity) -> list[dict[str, list[str]]]:
        """Anonymous -> `[]`; otherwise a token (bearer or, where offered, DPoP-bound)
        holding the scopes."""
        if not security.authenticated:
            return []
        self._secured = True
        self._scopes.update(security.scopes)
        scopes = list(security.scopes)
        names = [_token_scheme(self.config), *(["dpop"] if self.config.dpop else [])]
        return [{name: scopes} for name in names]

    def _request_body(self, binding: Binding) -> dict[str, Any] | None:
        """`body: "*"` is the request minus its path-bound fields; `body: "f"` is field f."""
        if binding.body_all:
            target: Descriptor | None = binding.method.input_type
            exclude = [p.path[0] for p in binding.path_params if len(p.path) == 1]
            required = target is not None and _has_required(target, exclude)
        elif binding.body is not None:
            target = None if binding.body.is_repeated else binding.body.message_type
            exclude = []
            required = field_behavior_pb2.REQUIRED in field_behaviors(binding.body)
        else:
            return None
        if target is not None and target.full_name == HTTP_BODY:
            return {"required": True, "content": _binary()}
        open_body = binding.behavior.allow_unknown_body  # unknown members are ignored
        if binding.body is not None:
            if open_body and target is not None and _plain_message(target):
                schema = self.registry.object_schema(target, closed=False)
            else:
                schema = self.registry.field(binding.body)
        elif (exclude or open_body) and target is not None:
            schema = self.registry.object_schema(target, exclude, closed=not open_body)
        else:
            schema = self.registry.message(binding.method.input_type)
        if binding.client_streaming:  # one schema per message, see gateway/json_stream.py
            array = {"type": "array", "items": schema}
            return {
                "content": {
                    "application/json": {"schema": array},
                    "application/x-ndjson": {"schema": schema},
                }
            }
        content = {"application/json": {"schema": schema}}
        if target is not None and _flat(target, exclude):
            # A form's unknown names are ignored where unknown query parameters are.
            open_form = binding.behavior.allow_unknown_query
            form = (
                self.registry.object_schema(target, exclude, closed=False) if open_form else schema
            )
            content[FORM_TYPE] = {"schema": form}
        return {"content": content, "required": True} if required else {"content": content}

    def _operation_responses(self, binding: Binding) -> dict[str, Any]:
        behavior = binding.behavior
        plan = etag_plan(binding)
        headers = self._header_refs(binding)
        if behavior.cache_control:
            headers["Cache-Control"] = _fixed_header(behavior.cache_control)
        if answers_etag(binding, plan):
            headers["ETag"] = _etag_header(plan)
        success = _response(behavior.success_status, headers)
        if behavior.success_status not in BODILESS:
            success["content"] = self._success_content(binding)
        responses: dict[str, Any] = {str(behavior.success_status): success}
        if behavior.created_field:  # the resource found, not created (AIP-133)
            responses["200"] = {**_response(200, headers), "content": success["content"]}
        if "ETag" in headers and binding.http_method == "GET":
            responses["304"] = _response(304, headers)
        for status in _error_statuses(binding, plan):
            responses[str(status)] = self._error_response(binding, status)
        return dict(sorted(responses.items()))

    def _success_content(self, binding: Binding) -> dict[str, Any]:
        field = binding.response_body
        output = binding.method.output_type
        if field is not None and field.message_type is not None and not field.is_repeated:
            output = field.message_type
        if output.full_name == HTTP_BODY:
            return _binary()
        schema = self.registry.message(output) if field is None else self.registry.field(field)
        if binding.server_streaming:  # grpc-gateway framing, see gateway/app.py
            error = self.registry.add(_ERROR, ERROR_SCHEMA)
            line = {"type": "object", "properties": {"result": schema, "error": error}}
            return {
                "application/x-ndjson": {"schema": line},
                "text/event-stream": {"schema": {"type": "string"}},
            }
        return {"application/json": {"schema": schema}}

    def _error_response(self, binding: Binding, status: int) -> dict[str, Any]:
        """A shared `components/responses` entry unless the method sets error caching."""
        oauth = binding.behavior.oauth_errors
        name = _OAUTH_ERROR if oauth else _ERROR
        schema = self.registry.add(name, OAUTH_ERROR_SCHEMA if oauth else ERROR_SCHEMA)
        headers = self._header_refs(binding)
        cache = binding.behavior.error_cache_control
        if cache:
            headers["Cache-Control"] = _fixed_header(cache)
        response = _response(status, headers)
        response["content"] = {"application/json": {"schema": schema}}
        if cache:
            return response
        deprecated = "Deprecated" if binding.deprecated_successor is not None else ""
        key = f"{name}{status}{deprecated}"
        self._responses.setdefault(key, response)
        return {"$ref": f"#/components/responses/{key}"}

    def _header_refs(self, binding: Binding) -> dict[str, Any]:
        names = list(self._response_headers)
        if binding.deprecated_successor is not None:
            names += ["Deprecation", "Link"]
        self._headers.update(names)
        return {name: {"$ref": f"#/components/headers/{name}"} for name in names}


@dataclass(frozen=True, slots=True)
class _Linkable:
    """What linking needs of one documented operation."""

    operation: dict[str, Any]  # as it is in the document, links added in place
    collection: str  # its path item's path without a `:verb`
    variables: tuple[str, ...]  # its path variables, as the path item names them
    body_fields: tuple[str, ...]  # JSON names of its success body's scalar fields
    target: bool  # in a path item's own slot (not x-additionalOperations): linkable to


def _body_fields(binding: Binding) -> tuple[str, ...]:
    """JSON names of the singular scalar fields of the success body; none for a
    bodiless success, a stream or an HttpBody, whose bodies are not one JSON object."""
    if binding.behavior.success_status in BODILESS or binding.server_streaming:
        return ()
    field = binding.response_body
    message: Descriptor | None = binding.method.output_type
    if field is not None:
        message = None if field.is_repeated else field.message_type
    if message is None or message.full_name == HTTP_BODY:
        return ()
    return tuple(f.json_name for f in message.fields if _scalar(f))


def _scalar(field: FieldDescriptor) -> bool:
    return field.message_type is None and not field.is_repeated


def _link_parameters(
    source: _Linkable, target: _Linkable, produced: Sequence[str]
) -> dict[str, str] | None:
    """The link's `parameters` from `source`'s response to `target`, or None when
    `target` does not continue `source`'s collection or takes no produced field."""
    if not target.target or not target.collection.startswith(source.collection + "/"):
        return None
    if not any(name in produced for name in target.variables):
        return None
    parameters: dict[str, str] = {}
    for name in target.variables:
        if name in source.variables:
            parameters[name] = f"$request.path.{name}"
        elif name in produced:
            parameters[name] = f"$response.body#/{_pointer_token(name)}"
        else:
            return None  # a variable neither the request nor the response gives
    return parameters


def _pointer_token(name: str) -> str:
    """A JSON Pointer reference token (RFC 6901 §3)."""
    return name.replace("~", "~0").replace("/", "~1")


_ETAG_HEADER: Final = {
    "required": True,
    "description": "A strong validator of the body; send it back in If-None-Match.",
    "schema": {"type": "string"},
}


def _etag_header(plan: EtagPlan | None) -> dict[str, Any]:
    if plan is None or plan.response is None:
        return _ETAG_HEADER
    return {
        "required": True,
        "description": f"The resource's `{plan.name}` field, quoted: send it back in "
        "If-Match or If-None-Match.",
        "schema": {"type": "string"},
    }


def _token_scheme(config: OpenApiConfig) -> str:
    return "oauth2" if config.token_url is not None else "bearer"


def _security_schemes(config: OpenApiConfig, scopes: Sequence[str]) -> dict[str, Any]:
    """`oauth2` (client credentials at the token URL) or `bearer`, and `dpop` if offered."""
    schemes: dict[str, Any] = {}
    if config.dpop:
        schemes["dpop"] = {
            "type": "http",
            "scheme": "DPoP",
            "description": "A DPoP-bound access token (RFC 9449) with its `DPoP` proof header.",
        }
    if config.token_url is None:
        schemes["bearer"] = {"type": "http", "scheme": "bearer"}
    else:
        schemes["oauth2"] = {
            "type": "oauth2",
            "flows": {
                "clientCredentials": {
                    "tokenUrl": config.token_url,
                    "scopes": {scope: f"The `{scope}` scope." for scope in scopes},
                }
            },
        }
    return dict(sorted(schemes.items()))


def _response_header(header: DocumentedHeader) -> dict[str, Any]:
    described: dict[str, Any] = {"required": True} if header.required else {}
    if header.description:
        described["description"] = header.description
    described["schema"] = (
        copy.deepcopy(dict(header.schema)) if header.schema is not None else {"type": "string"}
    )
    return described


def _response(status: int, headers: dict[str, Any]) -> dict[str, Any]:
    """A response object; `headers` only when there are any."""
    response: dict[str, Any] = {"description": _phrase(status)}
    if headers:
        response["headers"] = headers
    return response


def _fixed_header(value: str) -> dict[str, Any]:
    return {"required": True, "schema": {"type": "string", "const": value}}


def _error_statuses(binding: Binding, plan: EtagPlan | None) -> list[int]:
    statuses = set(ERROR_STATUSES)
    if plan is not None and plan.request is not None:
        statuses.add(412)  # a failed If-Match (RFC 9110 §13.1.1)
        if plan.required:
            statuses.add(428)  # RFC 6585 §3
    statuses.update(s for s in binding.behavior.error_status.values() if s >= 400)
    if binding.body_all or binding.body is not None:
        statuses.update(BODY_STATUSES)
    return sorted(statuses)


def _plain_message(descriptor: Descriptor) -> bool:
    """A message whose JSON is an object of its fields (not free JSON, not a map entry)."""
    return not descriptor.full_name.startswith("google.protobuf.") and not (
        descriptor.GetOptions().map_entry
    )


def _flat(message: Descriptor, exclude: Sequence[str]) -> bool:
    """Only scalars and enums (repeated or not) left: a form body can say it all."""
    fields = [f for f in message.fields if f.name not in exclude]
    return bool(fields) and all(f.message_type is None for f in fields)


def _has_required(message: Descriptor, exclude: Sequence[str]) -> bool:
    fields = [f for f in message.fields if f.name not in exclude]
    return any(field_behavior_pb2.REQUIRED in field_behaviors(f) for f in fields)


def _binary() -> dict[str, Any]:
    return {"*/*": {"schema": {"type": "string", "format": "binary"}}}


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"

"""REST transport: httpx against the gateway, driven by the same HttpRule.

The primary binding of each method says the verb and path; path fields are
substituted (percent-encoded as http.proto prescribes), the body is what the rule
names, and remaining set fields become query parameters by their JSON names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx
from google.protobuf import json_format
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message

from clients.errors import ApiError
from clients.transports.base import ResponseT
from gateway.options import http_rule
from gateway.template import Literal, Template, parse_template


class RestTransport:
    def __init__(self, base_url: str, *, client: httpx.AsyncClient | None = None) -> None:
        self._client = client or httpx.AsyncClient(base_url=base_url, timeout=30.0)
        self._templates: dict[str, tuple[str, Template, str, str]] = {}

    async def call(
        self,
        method: MethodDescriptor,
        request: Message,
        response_type: type[ResponseT],
        *,
        headers: Mapping[str, str],
    ) -> ResponseT:
        verb, template, body_field, response_field = self._rule(method)
        document = json_format.MessageToDict(request)
        path, used = _render(template, request)
        json_body: Any = None
        if body_field == "*":
            json_body = {k: v for k, v in document.items() if k not in used}
            query: dict[str, Any] = {}
        else:
            if body_field:
                json_field = method.input_type.fields_by_name[body_field].json_name
                json_body = document.pop(json_field, {})
            query = _query({k: v for k, v in document.items() if k not in used})
        response = await self._client.request(
            verb, path, params=query, json=json_body, headers=dict(headers)
        )
        if response.status_code >= 400:
            raise _api_error(response)
        payload = response.json()
        if response_field:
            payload = {method.output_type.fields_by_name[response_field].json_name: payload}
        return json_format.ParseDict(payload, response_type(), ignore_unknown_fields=True)

    def _rule(self, method: MethodDescriptor) -> tuple[str, Template, str, str]:
        cached = self._templates.get(method.full_name)
        if cached is None:
            rule = http_rule(method)
            if rule is None:
                raise ValueError(f"{method.full_name} has no HTTP binding")
            kind = rule.WhichOneof("pattern")
            if kind == "custom":
                verb, source = rule.custom.kind, rule.custom.path
            else:
                verb, source = str(kind).upper(), str(getattr(rule, str(kind)))
            cached = (verb, parse_template(source), rule.body, rule.response_body)
            self._templates[method.full_name] = cached
        return cached

    async def close(self) -> None:
        await self._client.aclose()


def _render(template: Template, request: Message) -> tuple[str, set[str]]:
    parts: list[str] = [seg.value if isinstance(seg, Literal) else "" for seg in template.segments]
    used: set[str] = set()
    for variable in reversed(template.variables):
        value: Any = request
        for name in variable.field_path:
            value = getattr(value, name)
        single = variable.end - variable.start == 1
        parts[variable.start : variable.end] = [_segments(str(value), single)]
        top = request.DESCRIPTOR.fields_by_name[variable.field_path[0]]
        used.add(top.json_name)
    path = "/" + "/".join(parts)
    return (f"{path}:{template.verb}" if template.verb else path), used


def _segments(value: str, single: bool) -> str:
    """`value` percent-encoded for the path (http.proto: a single-segment variable
    encodes `/` too); a segment that is `.` or `..` is written `%2E` / `%2E%2E`, or
    the URL's dot-segment removal (RFC 3986 §5.2.4) would change the path."""
    encoded = quote(value, safe="" if single else "/")
    return "/".join(
        segment.replace(".", "%2E") if segment in (".", "..") else segment
        for segment in encoded.split("/")
    )


def _query(document: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in document.items():
        if isinstance(value, dict):
            flat.update(_query(value, f"{prefix}{key}."))
        elif isinstance(value, bool):
            flat[f"{prefix}{key}"] = "true" if value else "false"
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _api_error(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    return ApiError(
        code=str(body.get("code", "UNKNOWN")),
        message=str(body.get("error", response.text)),
        details=list(body.get("details", [])),
        http_status=response.status_code,
    )

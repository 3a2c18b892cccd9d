"""The attack surface, read from the descriptors at collection time, and one way to call it.

`SURFACE` holds every method of `server.app.SERVICES` whose proto policy requires
authentication, each with its gRPC call (an empty request of the method's input type,
path fields filled with placeholders) and every HTTP binding the gateway serves for
it (path variables filled with placeholders, `{}` as the body where the binding
takes one). A method added to the protos is in this table without anyone editing
it, and so is in every generated security test.

`call` performs one of those calls with the given headers and returns what a client
sees as an `Outcome`: the HTTP status (REST) or gRPC code, the `ErrorInfo` reason
and the `WWW-Authenticate` challenge (header over REST, trailer over gRPC).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import grpc
import httpx
from google.protobuf import message_factory
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2

from gateway.bindings import Binding, bindings_for
from gateway.errors import http_status_for
from gateway.template import Literal, Template
from server.app import SERVICES
from server.policy import MethodPolicy, policies_for

PLACEHOLDER = "00000000-0000-4000-8000-00000000abcd"
DETAILS_TRAILER = "grpc-status-details-bin"
ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"

_INTEGER_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED32,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED32,
        FieldDescriptor.TYPE_SFIXED64,
    }
)


@dataclass(frozen=True, slots=True)
class Target:
    """One way to reach a method: over gRPC, or over one of its HTTP bindings; by default
    with placeholder identifiers and an empty request, or with a concrete payload."""

    method: SecuredMethod
    binding: Binding | None  # None: a direct gRPC call
    concrete_path: str | None = None  # REST: the path to call instead of the placeholder one
    request: Message | None = None  # gRPC: the request instead of `method.grpc_request()`
    body: Any = None  # REST: the JSON body instead of `{}` (bindings with a body only)

    @property
    def transport(self) -> str:
        return "grpc" if self.binding is None else "rest"

    @property
    def http_method(self) -> str:
        """The method a DPoP proof names: the binding's, or POST for gRPC (RFC 9449 §4.2)."""
        return "POST" if self.binding is None else self.binding.http_method

    @property
    def path(self) -> str:
        """The request path a DPoP proof's `htu` names (no query string)."""
        if self.binding is None:
            return self.method.full_method
        if self.concrete_path is not None:
            return self.concrete_path.split("?", 1)[0]
        return fill_template(self.binding.template)

    @property
    def label(self) -> str:
        if self.binding is None:
            return f"gRPC {self.method.full_method}"
        return f"{self.binding.http_method} {self.binding.template.source}"

    def with_payload(self, *, fields: dict[str, Any], body: Any = None) -> Target:
        """This target with concrete values: `fields` fill the path variables (REST) and
        the request (gRPC); `body` is the REST body of bindings that take one."""
        if self.binding is None:
            return replace(self, request=self.method.request_class(**fields))
        path = self.binding.template.source
        for name, value in fields.items():
            if isinstance(value, dict):  # a message field: its scalars fill `{name.sub}`
                for sub, inner in value.items():
                    path = path.replace("{" + f"{name}.{sub}" + "}", str(inner))
            path = path.replace("{" + name + "}", str(value))
        return replace(self, concrete_path=path, body=body)


@dataclass(frozen=True, slots=True)
class SecuredMethod:
    """An authenticated method: its policy, descriptor and every way to call it."""

    policy: MethodPolicy
    descriptor: MethodDescriptor
    bindings: tuple[Binding, ...]

    @property
    def full_method(self) -> str:
        return self.policy.full_method

    @property
    def name(self) -> str:
        return self.descriptor.full_name

    @property
    def targets(self) -> tuple[Target, ...]:
        return (Target(self, None), *(Target(self, b) for b in self.bindings))

    @property
    def request_class(self) -> type[Message]:
        return message_factory.GetMessageClass(self.descriptor.input_type)

    @property
    def response_class(self) -> type[Message]:
        return message_factory.GetMessageClass(self.descriptor.output_type)

    def grpc_request(self) -> Message:
        """An empty request with the path fields of the primary binding set to placeholders,
        so it reads like the REST call (and its required identifiers are present)."""
        request = self.request_class()
        if self.bindings:
            for param in self.bindings[0].path_params:
                _set_path(request, param.path)
        return request


def _set_path(message: Message, path: Sequence[str]) -> None:
    for name in path[:-1]:
        message = getattr(message, name)
    field = message.DESCRIPTOR.fields_by_name[path[-1]]
    if field.type == FieldDescriptor.TYPE_STRING:
        setattr(message, field.name, PLACEHOLDER)
    elif field.type in _INTEGER_TYPES:
        setattr(message, field.name, 1)
    elif field.type == FieldDescriptor.TYPE_BOOL:
        setattr(message, field.name, True)
    elif field.type == FieldDescriptor.TYPE_ENUM and field.enum_type is not None:
        setattr(message, field.name, field.enum_type.values[-1].number)
    elif field.type == FieldDescriptor.TYPE_BYTES:
        setattr(message, field.name, PLACEHOLDER.encode())
    else:  # float and double
        setattr(message, field.name, 1.0)


def fill_template(template: Template) -> str:
    """A concrete path matching `template`: literals as written, every wildcard (inside a
    variable or not) the placeholder, then the verb."""
    parts = [s.value if isinstance(s, Literal) else PLACEHOLDER for s in template.segments]
    path = "/" + "/".join(parts)
    return f"{path}:{template.verb}" if template.verb else path


def _secured_methods() -> tuple[SecuredMethod, ...]:
    policies = policies_for(SERVICES)
    bindings: dict[str, list[Binding]] = {}
    for binding in bindings_for(SERVICES):
        bindings.setdefault(binding.full_method, []).append(binding)
    found = []
    for service in SERVICES:
        for descriptor in service.methods:
            policy = policies[f"/{service.full_name}/{descriptor.name}"]
            if policy.authenticated:
                found.append(
                    SecuredMethod(
                        policy=policy,
                        descriptor=descriptor,
                        bindings=tuple(bindings.get(policy.full_method, ())),
                    )
                )
    return tuple(found)


SURFACE: tuple[SecuredMethod, ...] = _secured_methods()
ALL_POLICIES = policies_for(SERVICES)


def secured(full_method: str) -> SecuredMethod:
    """The table entry of one method, e.g. `/orchestrator.jobengine.v1.SourcesService/GetSource`."""
    for method in SURFACE:
        if method.full_method == full_method:
            return method
    raise LookupError(f"{full_method} is not an authenticated method")


# --- calling ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the caller saw, in the same terms over both transports."""

    transport: str
    http_status: int | None  # REST only
    code: int  # google.rpc code: gRPC's own, or the REST body's "code"
    reason: str | None  # ErrorInfo reason
    challenge: str | None  # WWW-Authenticate header / www-authenticate trailer
    message: str
    violations: tuple[str, ...]  # BadRequest field names
    body: Any

    @property
    def refused_by_authentication(self) -> bool:
        return self.code in (code_pb2.UNAUTHENTICATED, code_pb2.PERMISSION_DENIED) or (
            self.http_status in (401, 403)
        )


def _code_from_name(name: object) -> int:
    if not isinstance(name, str):
        return -1
    try:
        return int(code_pb2.Code.Value(name))
    except ValueError:
        return -1


def _rest_outcome(response: httpx.Response) -> Outcome:
    try:
        body: Any = response.json()
    except json.JSONDecodeError:
        body = response.text
    reason: str | None = None
    violations: list[str] = []
    code = code_pb2.OK if response.status_code < 300 else -1
    message = ""
    if response.status_code >= 400 and isinstance(body, dict):
        code = _code_from_name(body.get("code"))
        message = str(body.get("error", ""))
        for detail in body.get("details") or ():
            if detail.get("@type") == ERROR_INFO_TYPE and reason is None:
                reason = detail.get("reason")
            elif detail.get("@type") == BAD_REQUEST_TYPE:
                violations += [v.get("field", "") for v in detail.get("fieldViolations", ())]
    return Outcome(
        transport="rest",
        http_status=response.status_code,
        code=code,
        reason=reason,
        challenge=response.headers.get("www-authenticate"),
        message=message,
        violations=tuple(violations),
        body=body,
    )


def _grpc_outcome(error: grpc.aio.AioRpcError) -> Outcome:
    trailers = list(error.trailing_metadata() or ())
    reason: str | None = None
    violations: list[str] = []
    for key, value in trailers:
        if key == DETAILS_TRAILER and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                bad = error_details_pb2.BadRequest()
                if detail.Unpack(info) and reason is None:
                    reason = info.reason
                elif detail.Unpack(bad):
                    violations += [v.field for v in bad.field_violations]
    challenges = [v for k, v in trailers if k == "www-authenticate" and isinstance(v, str)]
    return Outcome(
        transport="grpc",
        http_status=None,
        code=int(error.code().value[0]),
        reason=reason,
        challenge=challenges[0] if challenges else None,
        message=error.details() or "",
        violations=tuple(violations),
        body=None,
    )


async def call(
    target: Target,
    headers: Sequence[tuple[str, str]],
    *,
    channel: grpc.aio.Channel,
    http: httpx.AsyncClient,
) -> Outcome:
    """Call `target` with `headers` (HTTP names; lower-cased into gRPC metadata)."""
    if target.binding is None:
        return await call_grpc(target.method, headers, channel=channel, request=target.request)
    return await call_rest(
        target.binding, headers, http=http, path=target.concrete_path, body=target.body
    )


async def call_grpc(
    method: SecuredMethod,
    headers: Sequence[tuple[str, str]],
    *,
    channel: grpc.aio.Channel,
    request: Message | None = None,
) -> Outcome:
    metadata = tuple((name.lower(), value) for name, value in headers)
    message = request if request is not None else method.grpc_request()
    if method.descriptor.server_streaming:  # admitted once its first message arrives
        return await _first_of_stream(method, message, metadata, channel)
    stub = channel.unary_unary(
        method.full_method,
        request_serializer=method.request_class.SerializeToString,
        response_deserializer=method.response_class.FromString,
    )
    try:
        response = await stub(message, metadata=metadata, timeout=10)
    except grpc.aio.AioRpcError as error:
        return _grpc_outcome(error)
    return _grpc_success(response)


async def _first_of_stream(
    method: SecuredMethod,
    request: Message,
    metadata: tuple[tuple[str, str], ...],
    channel: grpc.aio.Channel,
) -> Outcome:
    """A server-streaming call (which may never end by itself, e.g. a watch): its error,
    or its first message, after which it is canceled."""
    stub = channel.unary_stream(
        method.full_method,
        request_serializer=method.request_class.SerializeToString,
        response_deserializer=method.response_class.FromString,
    )
    call = stub(request, metadata=metadata, timeout=10)
    try:
        response = await call.read()
    except grpc.aio.AioRpcError as error:
        return _grpc_outcome(error)
    finally:
        call.cancel()
    return _grpc_success(response)


def _grpc_success(response: Any) -> Outcome:
    return Outcome(
        transport="grpc",
        http_status=None,
        code=code_pb2.OK,
        reason=None,
        challenge=None,
        message="",
        violations=(),
        body=response,
    )


async def call_rest(
    binding: Binding,
    headers: Sequence[tuple[str, str]],
    *,
    http: httpx.AsyncClient,
    path: str | None = None,
    body: Any = None,
) -> Outcome:
    takes_body = binding.body_all or binding.body is not None
    payload = (body if body is not None else {}) if takes_body else None
    url = path if path is not None else fill_template(binding.template)
    if binding.server_streaming:  # admitted once its first line arrives
        async with http.stream(
            binding.http_method, url, headers=list(headers), json=payload
        ) as streamed:
            if streamed.status_code >= 400:
                await streamed.aread()
                return _rest_outcome(streamed)
            first = await anext(streamed.aiter_lines(), "null")
        return replace(_rest_outcome(httpx.Response(streamed.status_code)), body=json.loads(first))
    response = await http.request(binding.http_method, url, headers=list(headers), json=payload)
    return _rest_outcome(response)


def expected_http_status(binding: Binding | None, code: int) -> int:
    """The status the gateway's one table (with the method's overrides) gives `code`."""
    overrides = binding.behavior.error_status if binding is not None else None
    return http_status_for(code, overrides)


def iter_targets() -> Iterator[Target]:
    for method in SURFACE:
        yield from method.targets

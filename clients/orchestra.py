"""The Orchestra cross-site API for Python callers (seed 004, DESIGN.md §4.3, issue 11
point 5): one `OrchestraClient` protocol, three transports.

The seed says its HTTP API "maps one-to-one to the server's internal
OrchestraClientInterface (the same contract LocalOrchestraClient implements
in-process)", carrying scalars and plain arrays, never entity objects. Here that
interface is `OrchestraClient`, six operations (the seventh of the seed, the token
request, is the transports' business):

- `start_process(definition_id, variables=None)` -> the new instance's id
  (POST /orchestra-api/process/{definition_id}/start);
- `list_instances(definition_id=None, status=None)` -> `InstanceSummary` list, newest
  first (GET /orchestra-api/instances);
- `get_instance(instance_id)` -> `InstanceState` (GET /orchestra-api/instance/{id});
- `signal_token(token_id, variables=None)` -> None
  (POST /orchestra-api/token/{token_id}/signal);
- `get_variables(instance_id)` -> name -> JSON value
  (GET /orchestra-api/instance/{id}/variables);
- `set_variable(instance_id, name, value)` -> None
  (PUT /orchestra-api/instance/{id}/variable/{name});

and three implementations a caller can swap without changing a line:

- `LocalOrchestraClient`: in-process, for code running inside the server: the
  server's own upstream (`InProcessTransport`), so every call passes the same
  interceptors (authentication, the tenant binding, the `access orchestra api`
  permission, errors) as one from the network, without a socket;
- `GrpcOrchestraClient`: `orchestrator.orchestra.v1.OrchestraService` over gRPC;
- `RemoteOrchestraClient`: the seed's REST paths over httpx, for remote sites.

Each authenticates with OAuth 2.0 client credentials (RFC 6749 §4.4; `ClientCredentials`
asks the token endpoint, keeps the token until shortly before it expires and
refreshes it then) or with a token obtained elsewhere. A call refused 401
(UNAUTHENTICATED: a revoked or rotated-out token) is sent once more with a fresh
token when the client has credentials to get one; a second refusal is raised.

Errors are the same types over all three, chosen by the seed's HTTP status of the
failure: over REST the status the server answered, over gRPC and in-process the
status the gateway would answer for that code and method (the method's
`error_status` options, e.g. NOT_FOUND -> 422 for an unknown definition, then the
one gRPC -> HTTP table of gateway/errors.py). So `NotFound` is an absent or another
tenant's instance (404), `Unprocessable` an unknown definition, a token that is not
parked or not the caller's, or a variable write to an instance that is not the
caller's or no longer running (422), `InvalidArgument` bad input (400),
`Unauthenticated` (401) and `PermissionDenied` (403: no `access orchestra api`, or
an operator client, which has no tenant binding). All are `clients.errors.ApiError`s:
`code` is the gRPC code name, `message` the server's text, `http_status` the seed
status. Input no transport can carry (an empty identifier, a value that is not
JSON) raises `InvalidArgument` before any call, with `http_status` None.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Protocol, TypeVar, runtime_checkable

import httpx
from google.protobuf import struct_pb2, timestamp_pb2
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from google.rpc import code_pb2

from clients.auth import ClientCredentials
from clients.base import CallerHeaders, ServiceClient
from clients.errors import ApiError
from clients.json_values import JsonValue, from_value, to_value
from clients.transports.base import Transport
from clients.transports.grpc import GrpcTransport
from clients.transports.inprocess import InProcessTransport
from clients.transports.rest import RestTransport
from gateway.behavior import http_behavior
from gateway.errors import http_status_for
from gateway.upstream import Upstream
from orchestrator.orchestra.v1 import instance_pb2
from orchestrator.orchestra.v1 import orchestra_service_pb2 as pb

ResponseT = TypeVar("ResponseT", bound=Message)

TOKEN_PATH = "/oauth/token"  # the seed's tokenUrl, relative to the server site


# --- errors ---------------------------------------------------------------------------


class OrchestraError(ApiError):
    """A refused Orchestra call; the subclass says why by the seed's HTTP status."""


class InvalidArgument(OrchestraError):
    """400: bad input (a variable name with path characters, variables over the size
    cap, a missing value); `violations` name the fields."""


class Unauthenticated(OrchestraError):
    """401: no valid token (or the token endpoint refused the client credentials)."""


class PermissionDenied(OrchestraError):
    """403: the client's role lacks `access orchestra api`, or it is not bound to one
    tenant."""


class NotFound(OrchestraError):
    """404: no such instance in the caller's tenant (absent and foreign alike)."""


class Unprocessable(OrchestraError):
    """422: well-formed but not possible: an unknown definition, a token that is not
    parked or not the caller's, a variable write to an instance that is not the
    caller's or no longer running. `code` tells NOT_FOUND from FAILED_PRECONDITION."""


_BY_STATUS: Mapping[int, type[OrchestraError]] = {
    400: InvalidArgument,
    401: Unauthenticated,
    403: PermissionDenied,
    404: NotFound,
    422: Unprocessable,
}


@cache
def _error_overrides(method: MethodDescriptor) -> Mapping[int, int]:
    return http_behavior(method).error_status


def seed_status(error: ApiError, method: MethodDescriptor) -> int:
    """The HTTP status the seed's API answers `error` of `method` with: the REST
    answer's own, else the gateway's mapping of the gRPC code for that method."""
    if error.http_status is not None:
        return error.http_status
    try:
        code = code_pb2.Code.Value(error.code)
    except ValueError:
        code = code_pb2.UNKNOWN
    return http_status_for(code, _error_overrides(method))


def typed_error(error: ApiError, method: MethodDescriptor) -> OrchestraError:
    """`error` as the `OrchestraError` subclass of its seed status."""
    status = seed_status(error, method)
    kind = _BY_STATUS.get(status, OrchestraError)
    return kind(code=error.code, message=error.message, details=error.details, http_status=status)


def _refused(field: str, problem: str) -> InvalidArgument:
    """An InvalidArgument raised before any call, shaped as the server's are."""
    violation = {"field": field, "description": f"{field}: {problem}"}
    return InvalidArgument(
        code="INVALID_ARGUMENT",
        message=f"{field}: {problem}",
        details=[
            {"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [violation]}
        ],
    )


# --- values -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InstanceSummary:
    """One item of `list_instances` (seed `InstanceSummary`)."""

    id: str
    definition_id: str
    status: str  # running, completed, failed, canceled; sagas also compensating, compensated


@dataclass(frozen=True, slots=True)
class TokenState:
    """One live token (seed `TokenState`): `parked` on a user task (only these can be
    signalled) or `waiting` (for a service task's job, a timer or a join)."""

    id: str
    node_id: str
    status: str
    job_id: str | None = None  # service tasks: the job the token waits for
    due_at: datetime | None = None  # timers: when it fires (UTC)


@dataclass(frozen=True, slots=True)
class Incident:
    """Why an instance failed."""

    node_id: str
    token_id: str
    kind: str  # job_dead_lettered, condition_error, no_flow, job_result_rejected, step_limit
    message: str
    job_id: str | None
    created_at: datetime | None


@dataclass(frozen=True, slots=True)
class InstanceState:
    """One instance with its live tokens, oldest first (seed `InstanceState`, plus the
    definition version, times in UTC and the incident of a failed instance)."""

    id: str
    definition_id: str
    status: str
    tenant_id: str
    tokens: tuple[TokenState, ...]
    definition_version: int
    created_at: datetime | None
    updated_at: datetime | None
    incident: Incident | None


def _time(message: Message, field: str) -> datetime | None:
    if not message.HasField(field):
        return None
    value: timestamp_pb2.Timestamp = getattr(message, field)
    return value.ToDatetime(tzinfo=UTC)


def instance_state(message: instance_pb2.InstanceState) -> InstanceState:
    """The plain value of an `InstanceState` message."""
    incident = None
    if message.HasField("incident"):
        found = message.incident
        incident = Incident(
            node_id=found.node_id,
            token_id=found.token_id,
            kind=found.kind,
            message=found.message,
            job_id=found.job_id or None,
            created_at=_time(found, "created_at"),
        )
    return InstanceState(
        id=message.id,
        definition_id=message.definition_id,
        status=message.status,
        tenant_id=message.tenant_id,
        tokens=tuple(
            TokenState(
                id=token.id,
                node_id=token.node_id,
                status=token.status,
                job_id=token.job_id or None,
                due_at=_time(token, "due_at"),
            )
            for token in message.tokens
        ),
        definition_version=message.definition_version,
        created_at=_time(message, "created_at"),
        updated_at=_time(message, "updated_at"),
        incident=incident,
    )


def _struct(variables: Mapping[str, object], field: str) -> struct_pb2.Struct:
    """`variables` as a Struct; raises InvalidArgument when `variables` is not a
    mapping (the seed's variables are a JSON object), naming the first value JSON
    cannot hold (`field.name`) or a key that is not a string."""
    if not isinstance(variables, Mapping):
        raise _refused(field, "must be an object mapping variable names to values")
    struct = struct_pb2.Struct()
    for name, value in variables.items():
        if not isinstance(name, str):
            raise _refused(field, f"names must be strings, got {name!r}")
        struct.fields[name].CopyFrom(_value(value, f"{field}.{name}"))
    return struct


def _value(value: object, field: str) -> struct_pb2.Value:
    try:
        return to_value(value)
    except (TypeError, ValueError) as exc:
        raise _refused(field, f"must be a JSON value ({exc})") from None


def _required(value: str, field: str) -> str:
    if not value:
        raise _refused(field, "is required")
    return value


# --- the protocol and its implementations --------------------------------------------------


@runtime_checkable
class OrchestraClient(Protocol):
    """The seed's OrchestraClientInterface: what a site can do with the server site's
    process engine, in the caller's tenant (the one its client is bound to).

    `close` ends the client's connections; it is not an operation of the API."""

    async def start_process(
        self, definition_id: str, variables: Mapping[str, object] | None = None
    ) -> str:
        """Start an instance of the latest version of `definition_id` available to the
        tenant with optional initial variables (names 1-128 letters, digits or '_',
        not starting with a digit; any JSON values); the new instance's id. Raises
        Unprocessable (NOT_FOUND) for an unknown or another tenant's definition,
        InvalidArgument for bad variables; a failed start leaves nothing behind."""
        ...

    async def list_instances(
        self, *, definition_id: str | None = None, status: str | None = None
    ) -> list[InstanceSummary]:
        """The tenant's instances, newest first, optionally of one definition and/or in
        one status (exact matches; an unknown value matches nothing)."""
        ...

    async def get_instance(self, instance_id: str) -> InstanceState:
        """One instance with its live tokens. Raises NotFound when it does not exist or
        is another tenant's (indistinguishable)."""
        ...

    async def signal_token(
        self, token_id: str, variables: Mapping[str, object] | None = None
    ) -> None:
        """Signal a parked token: merge `variables` (an extension of the seed, which
        sends none) and move it on. Raises Unprocessable for a token that is absent,
        another tenant's (NOT_FOUND) or not parked (FAILED_PRECONDITION, reason
        TOKEN_NOT_PARKED); of two concurrent signals of one token one succeeds."""
        ...

    async def get_variables(self, instance_id: str) -> dict[str, JsonValue]:
        """The instance's variables; empty for an instance that is absent or another
        tenant's (the seed's rule: no existence oracle)."""
        ...

    async def set_variable(self, instance_id: str, name: str, value: JsonValue) -> None:
        """Create or replace one variable (any JSON value, None included). Raises
        InvalidArgument for a bad name or an oversized value, Unprocessable for an
        instance that is absent or another tenant's (NOT_FOUND) or no longer running
        (FAILED_PRECONDITION)."""
        ...

    async def close(self) -> None: ...


class _ServiceOrchestraClient(ServiceClient):
    """The six operations over any transport (OrchestraService's messages), errors
    typed, one retry of a call refused 401 with a fresh token."""

    service = pb.DESCRIPTOR.services_by_name["OrchestraService"]

    def __init__(
        self,
        transport: Transport,
        *,
        credentials: ClientCredentials | None = None,
        access_token: str | None = None,
    ) -> None:
        """`credentials` get and refresh tokens; `access_token` is one obtained
        elsewhere (no retry then: there is no other to try)."""
        super().__init__(
            transport, CallerHeaders(access_token=access_token), credentials=credentials
        )

    async def __aenter__(self) -> _ServiceOrchestraClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.transport.close()

    async def _authorization(self, method: MethodDescriptor) -> dict[str, str]:
        headers = self.headers.as_dict()
        if self.credentials is not None:
            try:
                headers["Authorization"] = await self.credentials.authorization()
            except ApiError as exc:  # the token endpoint refused (RFC 6749 §5.2)
                raise typed_error(exc, method) from None
        return headers

    async def call(
        self, method: str, request: Message, response_type: type[ResponseT]
    ) -> ResponseT:
        """Call `method` of OrchestraService; raises the `OrchestraError` subclass of
        the failure's seed status (see the module docstring)."""
        descriptor = self.service.methods_by_name[method]
        headers = await self._authorization(descriptor)
        try:
            return await self.transport.call(descriptor, request, response_type, headers=headers)
        except ApiError as exc:
            error = typed_error(exc, descriptor)
        if not isinstance(error, Unauthenticated) or self.credentials is None:
            raise error
        self.credentials.invalidate(headers.get("Authorization"))
        headers = await self._authorization(descriptor)
        try:
            return await self.transport.call(descriptor, request, response_type, headers=headers)
        except ApiError as exc:
            raise typed_error(exc, descriptor) from None

    async def start_process(
        self, definition_id: str, variables: Mapping[str, object] | None = None
    ) -> str:
        request = pb.StartProcessRequest(definition_id=_required(definition_id, "definition_id"))
        if variables is not None:
            request.variables.struct_value.CopyFrom(_struct(variables, "variables"))
        response = await self.call("StartProcess", request, pb.StartProcessResponse)
        return response.instance_id

    async def list_instances(
        self, *, definition_id: str | None = None, status: str | None = None
    ) -> list[InstanceSummary]:
        request = pb.ListInstancesRequest(definition_id=definition_id or "", status=status or "")
        response = await self.call("ListInstances", request, pb.ListInstancesResponse)
        return [
            InstanceSummary(id=item.id, definition_id=item.definition_id, status=item.status)
            for item in response.instances
        ]

    async def get_instance(self, instance_id: str) -> InstanceState:
        request = pb.GetInstanceRequest(instance_id=_required(instance_id, "instance_id"))
        response = await self.call("GetInstance", request, pb.GetInstanceResponse)
        return instance_state(response.instance)

    async def signal_token(
        self, token_id: str, variables: Mapping[str, object] | None = None
    ) -> None:
        request = pb.SignalTokenRequest(token_id=_required(token_id, "token_id"))
        if variables is not None:
            request.variables.struct_value.CopyFrom(_struct(variables, "variables"))
        await self.call("SignalToken", request, pb.SignalTokenResponse)

    async def get_variables(self, instance_id: str) -> dict[str, JsonValue]:
        request = pb.GetVariablesRequest(instance_id=_required(instance_id, "instance_id"))
        response = await self.call("GetVariables", request, pb.GetVariablesResponse)
        return {name: from_value(value) for name, value in response.variables.fields.items()}

    async def set_variable(self, instance_id: str, name: str, value: JsonValue) -> None:
        request = pb.SetVariableRequest(
            instance_id=_required(instance_id, "instance_id"),
            name=_required(name, "name"),
            value=_value(value, "value"),
        )
        await self.call("SetVariable", request, pb.SetVariableResponse)


class LocalOrchestraClient(_ServiceOrchestraClient):
    """In-process: for code inside the server process, through the server's own
    upstream (`Application.gateway.upstream`), so the same policy decides (a token of
    a client bound to a tenant with `access orchestra api` is needed here too)."""

    def __init__(
        self,
        upstream: Upstream,
        *,
        credentials: ClientCredentials | None = None,
        access_token: str | None = None,
        timeout: float | None = 30.0,
    ) -> None:
        super().__init__(
            InProcessTransport(upstream, timeout=timeout),
            credentials=credentials,
            access_token=access_token,
        )


class GrpcOrchestraClient(_ServiceOrchestraClient):
    """`orchestrator.orchestra.v1.OrchestraService` over gRPC at `target` (host:port);
    the token travels as `authorization` metadata."""

    def __init__(
        self,
        target: str,
        *,
        credentials: ClientCredentials | None = None,
        access_token: str | None = None,
        timeout: float | None = 30.0,
    ) -> None:
        super().__init__(
            GrpcTransport(target, timeout=timeout),
            credentials=credentials,
            access_token=access_token,
        )


class RemoteOrchestraClient(_ServiceOrchestraClient):
    """The seed's REST API at `base_url` (scheme and host of the server site) over
    httpx, for remote sites.

    With `client_id` and `client_secret` it gets its tokens from `base_url` +
    `/oauth/token` (the seed's tokenUrl; `token_url` names another) with the
    client-credentials grant, the credentials in the form as the seed's token
    operation has them (RFC 6749 §2.3.1 client_secret_post), keeps each until
    shortly before it expires and retries a call refused 401 once with a new one.
    `credentials` instead gives a configured `ClientCredentials`; `access_token` a
    token obtained elsewhere. `http` is an httpx client to send with (its base URL
    must be `base_url`); the client closes only one it made.
    """

    def __init__(
        self,
        base_url: str,
        client_id: str | None = None,
        client_secret: str | None = None,
        *,
        token_url: str | None = None,
        credentials: ClientCredentials | None = None,
        access_token: str | None = None,
        http: httpx.AsyncClient | None = None,
        timeout: float = 30.0,
    ) -> None:
        base = base_url.rstrip("/")
        if credentials is None and client_id is not None:
            if client_secret is None:
                raise ValueError("client_secret is required with client_id")
            credentials = ClientCredentials(
                token_url or base + TOKEN_PATH,
                client_id,
                client_secret,
                client_authentication="client_secret_post",
                timeout=timeout,
            )
        self._own_http = http is None
        client = http or httpx.AsyncClient(base_url=base, timeout=timeout)
        super().__init__(
            RestTransport(base, client=client), credentials=credentials, access_token=access_token
        )

    async def close(self) -> None:
        if self._own_http:
            await self.transport.close()

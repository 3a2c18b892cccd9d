"""gRPC status -> HTTP: one table, one error writer (grpc-gateway runtime/errors.go).

Routing and request-building failures are first turned into a `Status`, so every
error body the gateway writes has the same shape:
`{"error": message, "code": "NOT_FOUND", "details": [...]}`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from google.rpc import code_pb2, error_details_pb2, status_pb2

# grpc-gateway's HTTPStatusFromCode.
HTTP_STATUS: Mapping[int, int] = {
    code_pb2.OK: 200,
    code_pb2.CANCELLED: 499,
    code_pb2.UNKNOWN: 500,
    code_pb2.INVALID_ARGUMENT: 400,
    code_pb2.DEADLINE_EXCEEDED: 504,
    code_pb2.NOT_FOUND: 404,
    code_pb2.ALREADY_EXISTS: 409,
    code_pb2.PERMISSION_DENIED: 403,
    code_pb2.UNAUTHENTICATED: 401,
    code_pb2.RESOURCE_EXHAUSTED: 429,
    code_pb2.FAILED_PRECONDITION: 400,
    code_pb2.ABORTED: 409,
    code_pb2.OUT_OF_RANGE: 400,
    code_pb2.UNIMPLEMENTED: 501,
    code_pb2.INTERNAL: 500,
    code_pb2.UNAVAILABLE: 503,
    code_pb2.DATA_LOSS: 500,
}

_FALLBACK_BODY = b'{"error":"failed to marshal error message","code":"INTERNAL","details":[]}'


@dataclass
class GatewayError(Exception):
    """A failure as a status, plus an optional HTTP status that overrides the table."""

    status: status_pb2.Status
    http_status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return str(self.status.message)


def status_error(
    code: int,
    message: str,
    *,
    http_status: int | None = None,
    field_name: str | None = None,
    reason: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> GatewayError:
    """A gateway-made error; `field_name` adds a BadRequest violation naming it."""
    status = status_pb2.Status(code=code, message=message)
    if reason is not None:
        status.details.add().Pack(error_details_pb2.ErrorInfo(reason=reason, domain="gateway"))
    if field_name is not None:
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=field_name, description=message
        )
        status.details.add().Pack(error_details_pb2.BadRequest(field_violations=[violation]))
    return GatewayError(status, http_status=http_status, headers=dict(headers or {}))


def http_status_for(code: int, overrides: Mapping[int, int] | None = None) -> int:
    if overrides and code in overrides:
        return overrides[code]
    return HTTP_STATUS.get(code, 500)


def code_name(code: int) -> str:
    try:
        return str(code_pb2.Code.Name(code))
    except ValueError:
        return "UNKNOWN"


def oauth_error_body(status: status_pb2.Status) -> bytes:
    """RFC 6749 §5.2: the ErrorInfo reason is the error code (`invalid_client`, ...)."""
    reason = "server_error" if status.code == code_pb2.INTERNAL else "invalid_request"
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info) and info.reason:
            reason = info.reason
            break
    return json.dumps(
        {"error": reason, "error_description": status.message}, separators=(",", ":")
    ).encode()


def error_body(status: status_pb2.Status) -> bytes:
    try:
        details: list[Any] = [json_format.MessageToDict(detail) for detail in status.details]
    except (json_format.Error, TypeError, KeyError):
        details = [{"@type": detail.type_url} for detail in status.details]
    try:
        return json.dumps(
            {"error": status.message, "code": code_name(status.code), "details": details},
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()
    except (TypeError, ValueError):
        return _FALLBACK_BODY

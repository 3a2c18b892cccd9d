"""gRPC status -> HTTP: one table, one error writer (grpc-gateway runtime/errors.go).

Routing and request-building failures are first turned into a `Status`, so every
error body the gateway writes has the same shape:
`{"error": message, "code": "NOT_FOUND", "details": [...]}`.

Methods with `error_format: ERROR_FORMAT_OAUTH` answer RFC 6749 §5.2 bodies instead,
`{"error": code, "error_description": text}`, whoever raised the error:

- the upstream's: the code is its ErrorInfo reason (the server speaks RFC 6749
  there); without one, `invalid_client` for 401, `temporarily_unavailable` for 503,
  `server_error` for any other 5xx and `invalid_request` otherwise;
- the gateway's own (malformed, oversized or mistyped body, bad query parameter or
  header, wrong method...): `invalid_request` with the error's HTTP status (400,
  405, 413, 415...), `server_error` for a gateway failure; never a gateway reason.

The description keeps to the characters §5.2 allows (`"` and `\\` become `'` and
`/`, anything else outside printable ASCII `?`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from google.rpc import code_pb2, error_details_pb2, status_pb2

from gateway.text import error_description

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
    from_upstream: bool = False  # the server's status, not one the gateway made

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
    """A gateway-made error; `field_name` adds a BadRequest violation naming it.

    `message` and `field_name` may quote what a client sent, lone surrogates
    included (a JSON `\\ud800` escape decodes to one): those are written as
    `\\udXXXX` escapes (`encodable`), so the status and its body always encode.
    """
    message = encodable(message)
    if field_name is not None:
        field_name = encodable(field_name)
    status = status_pb2.Status(code=code, message=message)
    if reason is not None:
        status.details.add().Pack(error_details_pb2.ErrorInfo(reason=reason, domain="gateway"))
    if field_name is not None:
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=field_name, description=message
        )
        status.details.add().Pack(error_details_pb2.BadRequest(field_violations=[violation]))
    return GatewayError(status, http_status=http_status, headers=dict(headers or {}))


def encodable(text: str) -> str:
    """`text` with each character UTF-8 cannot encode (a lone surrogate, RFC 3629 §3)
    as a `\\uXXXX` escape, e.g. `"\\ud800"` -> `"\\\\ud800"`; other text unchanged."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()
    return text


def http_status_for(code: int, overrides: Mapping[int, int] | None = None) -> int:
    if overrides and code in overrides:
        return overrides[code]
    return HTTP_STATUS.get(code, 500)


def code_name(code: int) -> str:
    try:
        return str(code_pb2.Code.Name(code))
    except ValueError:
        return "UNKNOWN"


def oauth_error_body(status: status_pb2.Status, *, http_status: int, from_upstream: bool) -> bytes:
    """RFC 6749 §5.2; see the module docstring for where the error code comes from."""
    reason = "server_error" if http_status >= 500 else "invalid_request"
    if from_upstream:
        reason = _OAUTH_DEFAULTS.get(http_status, reason)
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info) and info.reason:
                reason = info.reason
                break
    return json.dumps(
        {"error": reason, "error_description": error_description(status.message)},
        separators=(",", ":"),
    ).encode()


_OAUTH_DEFAULTS = {401: "invalid_client", 503: "temporarily_unavailable"}


def error_body(status: status_pb2.Status) -> bytes:
    try:
        details: list[Any] = [json_format.MessageToDict(detail) for detail in status.details]
    except (json_format.Error, TypeError, KeyError):
        details = [{"@type": detail.type_url} for detail in status.details]
    try:
        return json.dumps(
            {
                "error": encodable(status.message),
                "code": code_name(status.code),
                "details": details,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()
    except (TypeError, ValueError):
        return _FALLBACK_BODY

"""Write a successful response: response_body selection, status, caching, ETag/304,
deprecation headers (grpc-gateway runtime/handler.go).

Success statuses are the method's `success_status` (gateway/v1/http.proto), one of
SUCCESS_STATUSES; the BODILESS ones are written without content and without
Content-Type whatever the response message holds (RFC 9110 §15.3.5 204, §15.3.6
205, §15.4.5 304), and `check_success_status` refuses any other at start-up. A
method with a `created_field` answers 200 instead when that bool of the response is
false: an idempotent create that found its resource (AIP-133, RFC 9110 §15.3.2).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Final

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from gateway import codec
from gateway.bindings import Binding, BindingError

BODILESS: Final = frozenset({204, 205, 304})
SUCCESS_STATUSES: Final = frozenset({200, 201, 202, 203}) | BODILESS


def check_success_status(binding: Binding) -> None:
    """Raise BindingError for a success status the gateway cannot write: not in
    SUCCESS_STATUSES (a 206 needs Content-Range, a redirect a Location, which no
    message gives), 304 on anything but GET (RFC 9110 §15.4.5: the answer to a
    conditional GET), or a bodiless status on a server-streaming method."""
    status = binding.behavior.success_status
    source = binding.template.source
    if status not in SUCCESS_STATUSES:
        supported = ", ".join(str(s) for s in sorted(SUCCESS_STATUSES))
        raise BindingError(
            binding.method, source, f"success_status {status} is not one of {supported}"
        )
    if status == 304 and binding.http_method != "GET":
        raise BindingError(
            binding.method, source, f"success_status 304 on {binding.http_method}; only GET"
        )
    if status in BODILESS and binding.server_streaming:
        raise BindingError(
            binding.method, source, f"success_status {status} on a server-streaming method"
        )
    check_created_field(binding)
    check_sse_fields(binding)


def check_sse_fields(binding: Binding) -> None:
    """Raise BindingError for an `sse_id_field` (`last_event_id_field`) on a method that
    does not stream responses, or that names no singular string field of its response
    (request) message."""
    behavior = binding.behavior
    options = (
        ("sse_id_field", behavior.sse_id_field, binding.method.output_type),
        ("last_event_id_field", behavior.last_event_id_field, binding.method.input_type),
    )
    for option, name, message in options:
        if name is None:
            continue
        source = binding.template.source
        if not binding.server_streaming:
            raise BindingError(binding.method, source, f"{option} on a method that does not stream")
        field = message.fields_by_name.get(name)
        if field is None or field.is_repeated or field.type != FieldDescriptor.TYPE_STRING:
            raise BindingError(
                binding.method,
                source,
                f"{option} {name!r} names no singular string field of {message.full_name}",
            )


def sse_frame(data: bytes, event_id: str | None) -> bytes:
    """One Server-Sent Event (WHATWG HTML §9.2.6): an `id:` line when `event_id` is a
    non-empty value the format can carry (no CR, LF or NUL: such an id would end the
    line early or be ignored by the client, so none is written), then `data:`."""
    if event_id and not any(c in event_id for c in "\r\n\0"):
        return b"id: " + event_id.encode() + b"\ndata: " + data + b"\n\n"
    return b"data: " + data + b"\n\n"


def check_created_field(binding: Binding) -> None:
    """Raise BindingError for a `created_field` that names no singular bool field of
    the response message, or that comes with a success status it cannot stand for
    (200 itself, a bodiless one) or with a server-streaming method."""
    name = binding.behavior.created_field
    if name is None:
        return
    source = binding.template.source
    output = binding.method.output_type
    field = output.fields_by_name.get(name)
    if field is None or field.is_repeated or field.type != FieldDescriptor.TYPE_BOOL:
        raise BindingError(
            binding.method,
            source,
            f"created_field {name!r} names no singular bool field of {output.full_name}",
        )
    status = binding.behavior.success_status
    if status == 200 or status in BODILESS:
        raise BindingError(
            binding.method,
            source,
            f"created_field with success_status {status}: it needs a status with a body "
            "other than 200 (e.g. 201)",
        )
    if binding.server_streaming:
        raise BindingError(binding.method, source, "created_field on a server-streaming method")


def success_status(binding: Binding, response: Message) -> int:
    """The status of `response`: the method's `success_status`, or 200 when its
    `created_field` is false (the resource was found, not created)."""
    name = binding.behavior.created_field
    if name is not None and not getattr(response, name):
        return 200
    return binding.behavior.success_status


def render_body(binding: Binding, response: Message) -> tuple[bytes, str]:
    """The body and its content type; `response_body` may pick one field (even a repeated
    one, which answers a bare JSON array)."""
    field = binding.response_body
    payload = response
    if field is not None and field.message_type is not None and not field.is_repeated:
        payload = getattr(response, field.name)
    if codec.is_http_body(payload.DESCRIPTOR):
        return bytes(payload.data), payload.content_type or "application/octet-stream"  # type: ignore[attr-defined]
    document: object = codec.to_jsonable(payload)
    if field is not None and payload is response:
        # A repeated or scalar response_body: pick it from the printed message.
        document = codec.to_jsonable(response).get(
            field.json_name, [] if field.is_repeated else None
        )
    return codec.dumps(document), codec.JSON_TYPE


def strong_etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:40] + '"'


def matches_if_none_match(header: str | None, etag: str) -> bool:
    """RFC 9110 §13.1.2: weak comparison, `*` matches any current representation."""
    if not header:
        return False
    for candidate in header.split(","):
        tag = candidate.strip()
        if tag == "*":
            return True
        if tag.removeprefix("W/") == etag:
            return True
    return False


def success_headers(binding: Binding, raw_path: str) -> Iterable[tuple[str, str]]:
    behavior = binding.behavior
    if behavior.cache_control:
        yield "Cache-Control", behavior.cache_control
    deprecated = binding.deprecated_successor
    if deprecated is not None:
        yield from deprecation_headers(raw_path, *deprecated)


def deprecation_headers(raw_path: str, prefix: str, successor: str) -> Iterable[tuple[str, str]]:
    yield "Deprecation", "true"
    yield "Link", f'<{successor}{raw_path[len(prefix) :]}>; rel="successor-version"'

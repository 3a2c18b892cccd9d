"""Write a successful response: response_body selection, status, caching, ETag/304,
deprecation headers (grpc-gateway runtime/handler.go).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from google.protobuf.message import Message

from gateway import codec
from gateway.bindings import Binding


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

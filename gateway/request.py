"""Weave the request message from body, path captures and query (ESP request_weaver).

Order, as in grpc-gateway: the body first, then path captures (they win over the
body), then query parameters for every field the path and body did not bind.
PATCH without an explicit `update_mask` gets one from the body's keys (AIP-134).

Client- and bidi-streaming methods take a stream of request messages from the body
(`build_stream`, forms in gateway/json_stream.py): each element is woven as the
body of one message, and the path captures and query parameters apply to every
message of the stream, as Envoy's transcoder weaves its bindings into each one
(grpc-gateway leaves them out of streamed requests: a client that sent them would
see them ignored). Errors name the element: `[2].count`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.rpc import code_pb2

from gateway import codec, json_parser
from gateway.bindings import Binding
from gateway.errors import GatewayError, status_error
from gateway.field_paths import FieldError, named_words
from gateway.json_stream import decode_stream
from gateway.query import apply_query, set_field
from gateway.text import excerpt

FORM_TYPE = "application/x-www-form-urlencoded"
_FIELD_MASK = "google.protobuf.FieldMask"


def build_request(
    binding: Binding,
    message: Message,
    *,
    captures: Mapping[tuple[str, ...], str],
    query: Sequence[tuple[str, str]],
    body: bytes,
    content_type: str,
    form: Sequence[tuple[str, str]] | None = None,
) -> Message:
    body_keys = _apply_body(binding, message, body, content_type, form)
    _weave(binding, message, captures, query, body_keys)
    return message


def build_stream(
    binding: Binding,
    request_type: type[Message],
    *,
    captures: Mapping[tuple[str, ...], str],
    query: Sequence[tuple[str, str]],
    body: bytes,
    content_type: str,
) -> list[Message]:
    """The request messages of a client- or bidi-streaming call, in order.

    JSON bodies: a JSON array or newline-delimited values (gateway/json_stream.py),
    each element the body of one message (`body: "*"`: an object; `body: "field"`:
    that field's value); no body, no message. An HttpBody body is one message with
    all its bytes (none without bytes). Path captures and query parameters are set
    on every message, and checked even when the stream is empty.

    Raises GatewayError INVALID_ARGUMENT: reason INVALID_BODY naming the element
    (`invalid body field "[2].count": ...`, or `body` for a malformed document or a
    lone value that is no element), or the path/query reasons of `build_request`.
    """
    _weave(binding, request_type(), captures, query, None)  # path and query, checked once
    target_type = (
        binding.body.message_type if binding.body is not None else binding.method.input_type
    )
    if codec.is_http_body(target_type):
        if not body:
            return []
        message = request_type()
        build_request(
            binding, message, captures=captures, query=query, body=body, content_type=content_type
        )
        return [message]
    stream = decode_stream(body)
    messages: list[Message] = []
    for index, element in enumerate(stream.elements):
        message = request_type()
        _apply_element(binding, message, element, index, lone=stream.framing == "one")
        _weave(binding, message, captures, query, element)
        messages.append(message)
    return messages


def _apply_element(
    binding: Binding, message: Message, element: Any, index: int, *, lone: bool
) -> None:
    """Set the body of one streamed message from its element of the stream."""
    where = f"[{index}]"
    try:
        if binding.body is not None:
            json_parser.set_value(
                message, binding.body, element, path=f"{where}.{binding.body.name}"
            )
            return
        if isinstance(element, dict):
            json_parser.merge_object(message, element, path=where)
            return
    except FieldError as exc:
        raise _bad_element(f'invalid body field "{exc.param}": {exc.reason}', exc.param) from exc
    except RecursionError:
        raise _bad_element("request body is nested too deeply", "body") from None
    name = named_words(binding.method.input_type)
    kind = _describe(element)
    if lone:
        raise _bad_element(
            f"a streamed request body is a JSON array of {name} objects, or one object per "
            f"line; got {kind}",
            "body",
        )
    raise _bad_element(
        f'invalid body field "{where}": expected a JSON object ({name}), got {kind}', where
    )


def _describe(value: Any) -> str:
    """A JSON value as an error message names it (as gateway/json_parser.py does)."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int | float):
        return f"the number {excerpt(json.dumps(value))}"
    if isinstance(value, str):
        return f"the string {excerpt(json.dumps(value, ensure_ascii=False))}"
    return "an array" if isinstance(value, list) else "an object"


def _bad_element(message: str, field_name: str) -> GatewayError:
    return status_error(
        code_pb2.INVALID_ARGUMENT, message, field_name=field_name, reason="INVALID_BODY"
    )


def _weave(
    binding: Binding,
    message: Message,
    captures: Mapping[tuple[str, ...], str],
    query: Sequence[tuple[str, str]],
    body_keys: Any,
) -> None:
    """Path captures, then query parameters, onto a message whose body is set."""
    bound = _apply_path(binding, message, captures)
    if binding.body_all:
        # Nothing is left for the query to set: a parameter is unknown by definition,
        # refused unless the method allows unknown parameters (then it is ignored).
        if query and not binding.behavior.allow_unknown_query:
            name = query[0][0]
            raise status_error(
                code_pb2.INVALID_ARGUMENT,
                f'unexpected query parameter "{name}": '
                "this method takes the whole request in the body",
                field_name=name,
                reason="UNKNOWN_QUERY_PARAMETER",
            )
        query = ()
    if binding.body is not None:
        bound.append((binding.body.name,))
    if query:
        try:
            apply_query(
                message, query, bound=bound, allow_unknown=binding.behavior.allow_unknown_query
            )
        except FieldError as exc:
            raise status_error(
                code_pb2.INVALID_ARGUMENT,
                str(exc),
                field_name=exc.param,
                reason="INVALID_QUERY_PARAMETER",
            ) from exc
    if binding.http_method == "PATCH" and body_keys is not None:
        _fill_update_mask(binding, message, body_keys, query)


def _apply_body(
    binding: Binding,
    message: Message,
    body: bytes,
    content_type: str,
    form: Sequence[tuple[str, str]] | None,
) -> Any:
    if not binding.body_all and binding.body is None:
        return None
    target_type = (
        binding.body.message_type if binding.body is not None else binding.method.input_type
    )
    if codec.is_http_body(target_type):
        target: Any = getattr(message, binding.body.name) if binding.body is not None else message
        target.content_type = content_type or "application/octet-stream"
        target.data = body
        return None
    if form is not None:
        _apply_form(binding, message, form)
        return None
    if not body:  # absent; a blank body is malformed JSON (codec.loads says so)
        return None
    decoded = codec.loads(body)
    codec.parse_into(
        message, decoded, field=binding.body, allow_unknown=binding.behavior.allow_unknown_body
    )
    return decoded


def _apply_form(binding: Binding, message: Message, form: Sequence[tuple[str, str]]) -> None:
    """Form bodies map like query parameters, onto the body's target message."""
    target = getattr(message, binding.body.name) if binding.body is not None else message
    try:
        apply_query(
            target, form, allow_unknown=binding.behavior.allow_unknown_query, empty_items=True
        )
    except FieldError as exc:
        raise status_error(
            code_pb2.INVALID_ARGUMENT, str(exc), field_name=exc.param, reason="INVALID_FORM_FIELD"
        ) from exc


def _apply_path(
    binding: Binding, message: Message, captures: Mapping[tuple[str, ...], str]
) -> list[tuple[str, ...]]:
    bound: list[tuple[str, ...]] = []
    for param in binding.path_params:
        value = captures.get(param.path)
        if value is None:
            continue
        name = ".".join(param.path)
        _clear(message, param.fields)
        try:
            set_field(message, param.fields, [value], param=name)
        except FieldError as exc:
            raise status_error(
                code_pb2.INVALID_ARGUMENT,
                str(exc),
                field_name=name,
                reason="INVALID_PATH_PARAMETER",
            ) from exc
        bound.append(param.path)
    return bound


def _clear(message: Message, path: Sequence[FieldDescriptor]) -> None:
    """A path capture replaces what the body said about the same field."""
    target = message
    for field in path[:-1]:
        target = getattr(target, field.name)
    target.ClearField(path[-1].name)


def _fill_update_mask(
    binding: Binding, message: Message, body: Any, query: Sequence[tuple[str, str]]
) -> None:
    mask_field = _mask_field(binding.method.input_type)
    if mask_field is None or not isinstance(body, dict):
        return
    if any(name in (mask_field.name, mask_field.json_name) for name, _ in query):
        return
    mask = getattr(message, mask_field.name)
    if mask.paths:
        return
    target_type = (
        binding.body.message_type if binding.body is not None else binding.method.input_type
    )
    if target_type is None:
        return
    mask.paths.extend(_paths(target_type, body, prefix=""))


def _mask_field(descriptor: Descriptor) -> FieldDescriptor | None:
    field = descriptor.fields_by_name.get("update_mask")
    if (
        field is not None
        and field.message_type is not None
        and field.message_type.full_name == _FIELD_MASK
    ):
        return field
    return None


def _paths(descriptor: Descriptor, body: dict[str, Any], *, prefix: str) -> list[str]:
    by_json = {f.json_name: f for f in descriptor.fields}
    paths: list[str] = []
    for key, value in body.items():
        field = by_json.get(key) or descriptor.fields_by_name.get(key)
        if field is None:
            continue
        path = f"{prefix}{field.name}"
        nested = field.message_type
        plain_message = (
            nested is not None
            and not field.is_repeated
            and not nested.full_name.startswith("google.protobuf.")
        )
        if plain_message and isinstance(value, dict) and value and nested is not None:
            paths.extend(_paths(nested, value, prefix=f"{path}."))
        else:
            paths.append(path)
    return paths


__all__ = ["FORM_TYPE", "GatewayError", "build_request"]

"""Conditional requests over a resource's AIP-154 `etag` field (RFC 9110 §13.1).

A method whose HTTP options name an `etag_field` (gateway/v1/http.proto) gets:

- ETag from the resource: the response resource's field value, quoted (RFC 9110
  §8.8.3), instead of a hash of the body, so the tag a client reads is the tag it
  sends back (`response_tag`);
- If-Match carried to the server: the opaque value of a strong entity-tag is put
  into the request's etag field, where the server compares it and answers ABORTED
  on a mismatch (AIP-154), which the gateway answers 412 (`Condition.http_status`).
  Weak tags never match If-Match (RFC 9110 §13.1.1, strong comparison); `*` passes
  the request on unchanged; a list of strong tags is tried in order (`Condition.tags`),
  which is sound because an ABORTED call changed nothing;
- 428 Precondition Required (RFC 6585 §3) for a method declaring
  `precondition_required` when neither If-Match nor the field is given.

`etag_plan` reads all this per binding once, at start-up, and refuses an option
that names no field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.rpc import code_pb2

from gateway import errors
from gateway.bindings import Binding, BindingError
from gateway.text import excerpt, quoted_excerpt

IF_MATCH: Final = "If-Match"
MAX_IF_MATCH_TAGS: Final = 8  # strong tags tried in order; more is answered 400
# Entity-tags of any kind one If-Match may list before it is answered 400 unread:
# the gateway parses the header before the call, for callers with no token too.
MAX_IF_MATCH_LISTED: Final = 64
# RFC 9110 §8.8.3: opaque-tag = DQUOTE *etagc DQUOTE; etagc = %x21 / %x23-7E / obs-text.
_ETAGC: Final = "\x21\x23-\x7e\x80-\xff"
_ENTITY_TAG: Final = re.compile(rf'(W/)?"([{_ETAGC}]*)"')
_OPAQUE: Final = re.compile(rf"[{_ETAGC}]+")
_OWS: Final = " \t"


@dataclass(frozen=True, slots=True)
class EtagPlan:
    """Where one binding's etag field is: proto field paths from the request message
    and from the response resource (the message `response_body` names, if any)."""

    name: str
    request: tuple[FieldDescriptor, ...] | None
    response: tuple[FieldDescriptor, ...] | None
    required: bool

    @property
    def request_name(self) -> str:
        """The request field as a dotted proto path (`note.etag`), for error messages."""
        return ".".join(f.name for f in self.request or ())


@dataclass(frozen=True, slots=True)
class Condition:
    """What one request's If-Match and etag field amount to.

    `tags`: the values to put into the request's etag field, one call each, in
    order (`None`: leave the request as built). `conditional`: the request carries
    a tag, so the server's ABORTED means the condition was false.
    """

    tags: tuple[str | None, ...] = (None,)
    conditional: bool = False
    # An If-Match of weak tags only: it never matches, but its 412 comes where the
    # server's would, after the server's own checks (RFC 9110 §13.2.1), so the call is
    # made with a tag no ETag equals and `weak_only` answers its ABORTED.
    weak_only: errors.GatewayError | None = None

    def http_status(self, code: int, overrides: dict[int, int]) -> int | None:
        """412 for a failed condition (RFC 9110 §13.1.1): ABORTED after a tag was
        sent (AIP-154); None otherwise, or where the method's `error_status` overrides
        the code. A NOT_FOUND is never 412, under `*` either: without the condition
        the answer would be 404, and a server ignores preconditions when the answer
        without them would not be a 2xx (§13.2.1)."""
        if code in overrides:
            return None
        if code == code_pb2.ABORTED and self.conditional:
            return 412
        return None


UNCONDITIONAL: Final = Condition()


def etag_plan(binding: Binding) -> EtagPlan | None:
    """The binding's etag field, or None without `etag_field`.

    Raises BindingError when the field is in neither the request (its own field, or
    the field of the message the rule's `body` names) nor the response resource, is
    not a singular string, or when `precondition_required` has no request field.
    """
    behavior = binding.behavior
    name = behavior.etag_field
    source = binding.template.source
    if name is None:
        if behavior.precondition_required:
            raise BindingError(binding.method, source, "precondition_required needs etag_field")
        return None
    request = _request_path(binding, name)
    response = _response_path(binding, name)
    if request is None and response is None:
        raise BindingError(
            binding.method,
            source,
            f"etag_field {name!r} names no string field of the request, its body or the response",
        )
    if behavior.precondition_required and request is None:
        raise BindingError(
            binding.method,
            source,
            f"precondition_required: the request has no etag_field {name!r} for If-Match",
        )
    return EtagPlan(name, request, response, behavior.precondition_required)


def _request_path(binding: Binding, name: str) -> tuple[FieldDescriptor, ...] | None:
    own = _string_field(binding.method.input_type, name)
    if own is not None:
        return (own,)
    body = binding.body
    if body is not None and body.message_type is not None and not body.is_repeated:
        nested = _string_field(body.message_type, name)
        if nested is not None:
            return (body, nested)
    return None


def _response_path(binding: Binding, name: str) -> tuple[FieldDescriptor, ...] | None:
    field = binding.response_body
    if field is None:
        own = _string_field(binding.method.output_type, name)
        return (own,) if own is not None else None
    if field.message_type is None or field.is_repeated:
        return None
    nested = _string_field(field.message_type, name)
    return (field, nested) if nested is not None else None


def _string_field(message: Descriptor, name: str) -> FieldDescriptor | None:
    field = message.fields_by_name.get(name)
    if field is None or field.is_repeated or field.type != FieldDescriptor.TYPE_STRING:
        return None
    return field


def response_tag(plan: EtagPlan, response: Message) -> str | None:
    """The ETag header for `response` (`"value"`), or None when its resource carries
    no value or one an entity-tag cannot quote (RFC 9110 §8.8.3 etagc)."""
    if plan.response is None:
        return None
    value = _read(response, plan.response)
    if not value or _OPAQUE.fullmatch(value) is None:
        return None
    return f'"{value}"'


def condition(plan: EtagPlan, message: Message, if_match: str | None) -> Condition:
    """What `If-Match` (None when absent) and the request's etag field amount to.

    Raises GatewayError: 400 for a malformed If-Match, for one listing more than
    MAX_IF_MATCH_TAGS strong tags, or for one that does not list the field's value;
    428 when the method requires a precondition and there is none. An If-Match of
    weak tags only is a Condition whose `weak_only` is the 412 to answer when the
    server finds the condition false.
    """
    if plan.request is None:
        return UNCONDITIONAL  # nothing to carry it (e.g. a GET): If-Match is not evaluated
    current = _read(message, plan.request)
    if if_match is None:
        if not current and plan.required:
            raise errors.status_error(
                code_pb2.FAILED_PRECONDITION,
                f"this method requires a precondition: send {IF_MATCH} with the resource's "
                f"ETag, or {plan.request_name}",
                http_status=428,
                field_name=IF_MATCH,
                reason="PRECONDITION_REQUIRED",
            )
        return Condition(conditional=bool(current))
    star, strong, weak = parse_if_match(if_match)
    if star:
        return Condition(conditional=bool(current))
    # An empty strong tag ("") matches no ETag this gateway serves (an empty etag
    # field is no tag at all, AIP-154), and put in the field it would read as "no
    # condition": it never matches, as a weak tag never does.
    empty = "" in strong
    never = [*weak, *(['""'] if empty else [])]
    strong = tuple(tag for tag in strong if tag)
    if not strong:
        what = "entity-tags that are weak or empty" if empty else "weak entity-tags"
        failed = errors.status_error(
            code_pb2.ABORTED,
            f"{IF_MATCH} {excerpt(', '.join(never))} lists only {what}, which never match "
            "(RFC 9110 §13.1.1)",
            http_status=412,
            field_name=IF_MATCH,
            reason="PRECONDITION_FAILED",
        )
        # A tag as written holds DQUOTEs, which no served ETag's value has.
        return Condition(tags=(never[0],), conditional=True, weak_only=failed)
    if current:
        if current not in strong:
            quoted = ", ".join(f'"{tag}"' for tag in strong)
            raise errors.status_error(
                code_pb2.INVALID_ARGUMENT,
                f"{IF_MATCH} {excerpt(quoted)} disagrees with {plan.request_name} "
                f"{quoted_excerpt(current)}",
                field_name=plan.request_name,
                reason="PRECONDITION_CONFLICT",
            )
        return Condition(conditional=True)
    if len(strong) > MAX_IF_MATCH_TAGS:
        raise _bad_if_match(f"lists more than {MAX_IF_MATCH_TAGS} entity-tags")
    return Condition(tags=strong, conditional=True)


def parse_if_match(value: str) -> tuple[bool, tuple[str, ...], tuple[str, ...]]:
    """RFC 9110 §13.1.1 `If-Match = "*" / #entity-tag` -> (star, the strong tags'
    opaque values without duplicates, the weak tags as written). Raises GatewayError
    (400) when the value is neither."""
    text = value.strip(_OWS)
    if text == "*":
        return True, (), ()
    strong: dict[str, None] = {}  # ordered, without duplicates, in linear time
    weak: list[str] = []
    listed = 0
    position = 0
    while position < len(text):
        if text[position] in _OWS + ",":  # empty list elements are allowed (§5.6.1)
            position += 1
            continue
        match = _ENTITY_TAG.match(text, position)
        if match is None:
            raise _bad_if_match(f"is not '*' or a list of entity-tags: {quoted_excerpt(value)}")
        listed += 1
        if listed > MAX_IF_MATCH_LISTED:
            raise _bad_if_match(f"lists more than {MAX_IF_MATCH_LISTED} entity-tags")
        if match.group(1):
            weak.append(match.group(0))
        else:
            strong.setdefault(match.group(2))
        position = match.end()
        while position < len(text) and text[position] in _OWS:
            position += 1
        if position < len(text) and text[position] != ",":
            raise _bad_if_match(f"is not '*' or a list of entity-tags: {quoted_excerpt(value)}")
    if not strong and not weak:
        raise _bad_if_match("is empty")
    return False, tuple(strong), tuple(weak)


def put_tag(plan: EtagPlan, message: Message, tag: str) -> None:
    """Set the request's etag field to `tag` (creating the body resource if needed)."""
    assert plan.request is not None
    target = message
    for field in plan.request[:-1]:
        target = getattr(target, field.name)
    setattr(target, plan.request[-1].name, tag)


def _read(message: Message, path: tuple[FieldDescriptor, ...]) -> str:
    target = message
    for field in path[:-1]:
        if not target.HasField(field.name):
            return ""
        target = getattr(target, field.name)
    value: str = getattr(target, path[-1].name)
    return value


def _bad_if_match(problem: str) -> errors.GatewayError:
    return errors.status_error(
        code_pb2.INVALID_ARGUMENT,
        f"{IF_MATCH} {problem}",
        field_name=IF_MATCH,
        reason="BAD_PRECONDITION",
    )

"""The ASGI application: route -> build request -> call upstream -> write response.

All stages are pure modules; this one only wires them to Starlette's request and
response objects and owns the upstream's lifecycle. It decides nothing about who
may call what: headers travel to the gRPC server as metadata, and its status comes
back through the one error table.

Every kind of method is served. Unary and client-streaming answers are one JSON
document; server- and bidi-streaming answers are grpc-gateway's stream framing, one
`{"result": message}` per line (`application/x-ndjson`) or per server-sent event
(`Accept: text/event-stream`), ending with `{"error": status}` if the call fails
after its first message (a call that fails before it is an ordinary HTTP error).
Client- and bidi-streaming requests are the whole body read as a stream of
messages (gateway/request.py `build_stream`), sent upstream once all parse.

HEAD is served wherever GET is bound and no HEAD binding is (RFC 9110 §9.1, §9.3.2):
the GET's call, status and header fields, no body; `Allow` lists HEAD with GET.

The path template of the route a request matched (`/v1/{name=shelves/*}`) is put in
its ASGI scope under `PATH_PATTERN_KEY` before the upstream is called, as
grpc-gateway's `runtime.HTTPPathPattern(ctx)`: a wrapper that labels requests by
route (metrics, access logs, spans) reads it instead of matching the path again.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field

from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from google.rpc import code_pb2
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from gateway import codec, conditional, errors
from gateway import request as request_builder
from gateway import response as writer
from gateway.behavior import HttpBehavior, owned_prefixes
from gateway.bindings import Binding, BindingError
from gateway.metadata import HeaderRules, RequestHead
from gateway.openapi import Documents
from gateway.openapi_config import OpenApiConfig
from gateway.query import parse_form, parse_query
from gateway.router import (
    BadPath,
    MethodNotAllowed,
    NoRoute,
    RouteConflictError,
    RouteMatch,
    Router,
)
from gateway.text import quoted_excerpt
from gateway.upstream import (
    RequestStreamUpstream,
    StreamCall,
    UnaryResult,
    Upstream,
    UpstreamError,
)

log = logging.getLogger("gateway")

DEFAULT_MAX_BODY = 4 * 1024 * 1024
PATH_PATTERN_KEY = "gateway.path_pattern"  # scope key: the matched route's template
NDJSON_TYPE = "application/x-ndjson"  # a request stream's other form (grpc-gateway)
_GRPC_TIMEOUT = re.compile(r"^(\d{1,8})([HMSmun])$")
_GRPC_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def admit_all(method: MethodDescriptor, headers: Mapping[str, str]) -> errors.GatewayError | None:
    """GatewayConfig.admission's default: the server alone decides who may call."""
    return None


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Everything an API's owner may set; the defaults know no product.

    Product-specific names (headers to forward or expose, the token URL and trace
    header in OpenAPI, who may call what) come in through `headers` and `openapi`.
    """

    max_body_bytes: int = DEFAULT_MAX_BODY
    # Which request headers travel as metadata and which metadata returns as headers.
    headers: HeaderRules = field(default_factory=HeaderRules)
    default_timeout: float | None = 30.0
    # Keep X-Forwarded-Proto/-Host and extend X-Forwarded-For from the hop in front
    # (a proxy that overwrites them); see gateway/metadata.py.
    trust_forwarded_headers: bool = False
    # Leading proto comments by full name (`comments_from_files` of a descriptor set
    # built with --include_source_info): the OpenAPI descriptions.
    comments: Mapping[str, str] = field(default_factory=dict)
    # Security, scopes and the server's own headers, as the OpenAPI documents say them.
    openapi: OpenApiConfig = field(default_factory=OpenApiConfig)
    # Whether a request carries credentials at all, asked before its body and query
    # are read: an answer (a 401 with its challenges) is sent instead of any 400 the
    # request's fields would earn, as RFC 6750 §3.1 wants a request without usable
    # credentials answered, and as a gRPC server's interceptors authenticate before
    # the servicer reads a field. None admits the request; verifying credentials stays
    # the server's (the hook sees the method and the request headers only).
    admission: Callable[[MethodDescriptor, Mapping[str, str]], errors.GatewayError | None] = (
        admit_all
    )


class Gateway:
    def __init__(
        self, bindings: Iterable[Binding], upstream: Upstream, config: GatewayConfig | None = None
    ) -> None:
        self.config = config or GatewayConfig()
        self.upstream = upstream
        # The same upstream, when it can also stream requests (client/bidi methods).
        self._request_streams = upstream if isinstance(upstream, RequestStreamUpstream) else None
        self.router: Router[Binding] = Router()
        self.bindings: list[Binding] = []
        # Per binding (by identity: the router hands back these very objects): the
        # gRPC method path and its message classes, worked out once.
        self._calls: dict[int, tuple[str, type[Message], type[Message]]] = {}
        self._etags: dict[int, conditional.EtagPlan] = {}  # bindings with an etag_field
        for binding in bindings:
            try:
                self.router.add(binding.http_method, binding.template, binding)
            except RouteConflictError as exc:
                raise BindingError(binding.method, binding.template.source, str(exc)) from exc
            writer.check_success_status(binding)
            plan = conditional.etag_plan(binding)
            _check_request_stream(binding, plan)
            if plan is not None:
                self._etags[id(binding)] = plan
            self.bindings.append(binding)
            self._calls[id(binding)] = (
                binding.full_method,
                message_factory.GetMessageClass(binding.method.input_type),
                message_factory.GetMessageClass(binding.method.output_type),
            )
        # Prefixes whose unrouted requests answer their owner's errors, longest first.
        self._owned = owned_prefixes({id(b.service): b.service for b in self.bindings}.values())
        # Built on the first request for one.
        self.openapi = Documents(
            self.bindings, comments=self.config.comments, config=self.config.openapi
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        response = await self.handle(Request(scope, receive))
        if scope["method"] == "HEAD":
            await _send_head(response, send)
        else:
            await response(scope, receive, send)

    async def handle(self, request: Request) -> Response:
        binding: Binding | None = None
        owner: HttpBehavior | None = None  # the error behaviour of a path's owner
        raw_path = _raw_path(request)
        try:
            document = self._openapi_document(request, raw_path)
            if document is not None:
                return document
            try:
                match = self._match(request.method, raw_path)
            except MethodNotAllowed as exc:
                binding = self._path_binding(raw_path, exc.allowed)
                owner = self._owner(raw_path)
                raise _route_error(exc, request.method, raw_path) from None
            except (NoRoute, BadPath) as exc:
                owner = self._owner(raw_path)
                raise _route_error(exc, request.method, raw_path) from None
            binding = match.target
            request.scope[PATH_PATTERN_KEY] = binding.template.source
            return await self._call(request, match, raw_path)
        except errors.GatewayError as exc:
            return self._error(exc, binding, raw_path, owner)
        except Exception:
            # A gateway bug (or a response it cannot print) is a 500 with the usual
            # body; the traceback stays in the log.
            log.exception("gateway failure on %s %s", request.method, raw_path)
            failure = errors.status_error(code_pb2.INTERNAL, "internal gateway error")
            return self._error(failure, binding, raw_path)

    def _match(self, method: str, raw_path: str) -> RouteMatch[Binding]:
        """The route of `method` on `raw_path`; HEAD takes the path's GET route when no
        HEAD route is bound there (RFC 9110 §9.3.2: the GET's header fields, no body;
        the server drops the body of a HEAD response). Raises what Router.match does,
        MethodNotAllowed listing HEAD wherever GET is allowed."""
        try:
            return self.router.match(method, raw_path)
        except MethodNotAllowed as exc:
            if "GET" not in exc.allowed:
                raise
            if method.upper() == "HEAD":
                return self.router.match("GET", raw_path)
            if "HEAD" in exc.allowed:
                raise
            allowed = tuple(sorted((*exc.allowed, "HEAD")))
            raise MethodNotAllowed(exc.method, exc.path, allowed) from None

    def _owner(self, raw_path: str) -> HttpBehavior | None:
        """The error behaviour of the service owning `raw_path` (`owned_prefixes`)."""
        for prefix, behavior in self._owned:
            if raw_path.startswith(prefix) or raw_path == prefix.rstrip("/"):
                return behavior
        return None

    def _path_binding(self, raw_path: str, allowed: Iterable[str]) -> Binding | None:
        """The binding whose error behaviour a 405 on this path follows: the path's
        own when all its methods agree (the OAuth token endpoint answers RFC 6749
        errors, `Cache-Control: no-store`, to a GET too)."""
        found = [self._match(method, raw_path).target for method in allowed]
        shapes = {(b.behavior.oauth_errors, b.behavior.error_cache_control) for b in found}
        return found[0] if len(shapes) == 1 else None

    async def _call(self, request: Request, match: RouteMatch[Binding], raw_path: str) -> Response:
        binding = match.target
        refusal = self.config.admission(binding.method, request.headers)
        if refusal is not None:
            raise refusal
        method, request_type, response_type = self._calls[id(binding)]
        scope = request.scope
        head = self.config.headers.read(scope, trust=self.config.trust_forwarded_headers)
        body, content_type, form = await self._read_body(request, binding, head)
        raw_query = scope.get("query_string")
        query = parse_query(raw_query) if raw_query else ()
        if binding.client_streaming:
            requests = request_builder.build_stream(
                binding,
                request_type,
                captures=match.captures,
                query=query,
                body=body,
                content_type=content_type,
            )
            return await self._call_streaming_requests(
                request, binding, requests, method, response_type, head, raw_path
            )
        message = request_builder.build_request(
            binding,
            request_type(),
            captures=match.captures,
            query=query,
            body=body,
            content_type=content_type,
            form=form,
        )
        if binding.server_streaming:
            _resume_from(binding, message, request.headers.get("last-event-id"))
            timeout = _timeout(head, None)
            return await self._stream(
                binding,
                head,
                raw_path,
                self.upstream.stream(
                    method, message, response_type, metadata=head.metadata, timeout=timeout
                ),
            )
        timeout = _timeout(head, self.config.default_timeout)
        plan = self._etags.get(id(binding))
        condition = conditional.UNCONDITIONAL
        if plan is not None:
            if_match = request.headers.getlist("if-match")
            condition = conditional.condition(plan, message, ", ".join(if_match) or None)
        for attempt, tag in enumerate(condition.tags, start=1):
            if tag is not None and plan is not None:
                conditional.put_tag(plan, message, tag)
            try:
                result = await self.upstream.unary(
                    method, message, response_type, metadata=head.metadata, timeout=timeout
                )
                break
            except UpstreamError as exc:
                code = exc.status.code
                if code == code_pb2.ABORTED and attempt < len(condition.tags):
                    continue  # that tag did not match and nothing changed: try the next
                if code == code_pb2.ABORTED and condition.weak_only is not None:
                    raise condition.weak_only from None
                raise errors.GatewayError(
                    exc.status,
                    http_status=condition.http_status(code, binding.behavior.error_status),
                    headers=dict(self.config.headers.response_headers(exc.headers)),
                    from_upstream=True,
                ) from None
        return self._unary_response(request, binding, plan, result, head, raw_path)

    async def _call_streaming_requests(
        self,
        request: Request,
        binding: Binding,
        requests: list[Message],
        method: str,
        response_type: type[Message],
        head: RequestHead,
        raw_path: str,
    ) -> Response:
        """A client-streaming call, answered as a unary one, or a bidi-streaming call,
        answered as a server-streaming one."""
        upstream = self._request_streams
        if upstream is None:  # an Upstream of the API owner's that only sends one request
            raise errors.status_error(
                code_pb2.UNIMPLEMENTED,
                f"{method} streams requests, which this gateway's upstream cannot send",
            )
        if binding.server_streaming:
            timeout = _timeout(head, None)
            call = upstream.bidi_stream(
                method, requests, response_type, metadata=head.metadata, timeout=timeout
            )
            return await self._stream(binding, head, raw_path, call)
        timeout = _timeout(head, self.config.default_timeout)
        try:
            result = await upstream.client_stream(
                method, requests, response_type, metadata=head.metadata, timeout=timeout
            )
        except UpstreamError as exc:
            raise errors.GatewayError(
                exc.status,
                headers=dict(self.config.headers.response_headers(exc.headers)),
                from_upstream=True,
            ) from None
        plan = self._etags.get(id(binding))  # a response-side etag only (_check_request_stream)
        return self._unary_response(request, binding, plan, result, head, raw_path)

    def _unary_response(
        self,
        request: Request,
        binding: Binding,
        plan: conditional.EtagPlan | None,
        result: UnaryResult,
        head: RequestHead,
        raw_path: str,
    ) -> Response:
        headers = dict(self.config.headers.response_headers((*result.headers, *result.trailers)))
        headers.update(writer.success_headers(binding, raw_path))
        status = writer.success_status(binding, result.response)
        content, media_type = b"", None
        if status not in writer.BODILESS:
            content, media_type = writer.render_body(binding, result.response)
        etag = conditional.response_tag(plan, result.response) if plan is not None else None
        if etag is None and binding.behavior.etag and status not in writer.BODILESS:
            etag = writer.strong_etag(content)
        if etag is not None:
            headers["ETag"] = etag
            conditional_get = request.method in ("GET", "HEAD")
            if conditional_get and writer.matches_if_none_match(head.get("if-none-match"), etag):
                return Response(status_code=304, headers=headers)
        return Response(content, status, headers, media_type)

    async def _stream(
        self,
        binding: Binding,
        head: RequestHead,
        raw_path: str,
        opening: Awaitable[StreamCall],
    ) -> Response:
        """Answer a server- or bidi-streaming call that `opening` opens."""
        sse = "text/event-stream" in (head.get("accept") or "")
        try:
            call = await opening
        except UpstreamError as exc:
            raise errors.GatewayError(
                exc.status,
                headers=dict(self.config.headers.response_headers(exc.headers)),
                from_upstream=True,
            ) from None
        headers = dict(self.config.headers.response_headers(call.headers))
        headers.update(writer.success_headers(binding, raw_path))
        return StreamingResponse(
            _stream_frames(call.messages, sse=sse, id_field=binding.behavior.sse_id_field),
            status_code=binding.behavior.success_status,
            headers=headers,
            media_type="text/event-stream" if sse else "application/x-ndjson",
        )

    async def _read_body(
        self, request: Request, binding: Binding, head: RequestHead
    ) -> tuple[bytes, str, list[tuple[str, str]] | None]:
        limit = self.config.max_body_bytes
        declared = head.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _too_large(limit)
        content_type = head.get("content-type") or ""
        takes_body = binding.body_all or binding.body is not None
        if not takes_body:
            return b"", content_type, None  # nothing would read it: left unread
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                chunks.append(chunk)
        except ClientDisconnect:
            raise errors.status_error(code_pb2.CANCELLED, "client disconnected") from None
        body = b"".join(chunks)
        media = content_type.split(";", 1)[0].strip().lower()
        if not body:
            return body, content_type, None
        target = (
            binding.body.message_type if binding.body is not None else binding.method.input_type
        )
        if codec.is_http_body(target):
            return body, content_type, None
        json_media = not media or media == codec.JSON_TYPE or media.endswith("+json")
        if binding.client_streaming:
            if not json_media and media != NDJSON_TYPE:
                raise _unsupported_media(
                    media, f"{codec.JSON_TYPE} (an array of messages) or {NDJSON_TYPE}"
                )
            return body, content_type, None
        if media == request_builder.FORM_TYPE:
            return body, content_type, _form_fields(body)
        if not json_media:
            raise _unsupported_media(media, f"{codec.JSON_TYPE} or {request_builder.FORM_TYPE}")
        return body, content_type, None

    def _error(
        self,
        exc: errors.GatewayError,
        binding: Binding | None,
        raw_path: str,
        owner: HttpBehavior | None = None,
    ) -> Response:
        behavior = binding.behavior if binding is not None else owner
        overrides = behavior.error_status if behavior is not None else None
        status = exc.http_status or errors.http_status_for(exc.status.code, overrides)
        headers = dict(exc.headers)
        if behavior is not None and behavior.error_cache_control:
            headers["Cache-Control"] = behavior.error_cache_control
        if binding is not None:
            deprecated = binding.deprecated_successor
            if deprecated is not None:
                headers.update(writer.deprecation_headers(raw_path, *deprecated))
        if status >= 500:
            log.warning(
                "upstream error %s: %s", errors.code_name(exc.status.code), exc.status.message
            )
        if behavior is not None and behavior.oauth_errors:
            body = errors.oauth_error_body(
                exc.status, http_status=status, from_upstream=exc.from_upstream
            )
        else:
            body = errors.error_body(exc.status)
        return Response(body, status, headers, codec.JSON_TYPE)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.upstream.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # --- OpenAPI documents (gateway/openapi.py) ---------------------------------------
    # GET/HEAD /openapi.json, /openapi/{api}.json and /.well-known/openapi, answered
    # before routing unless a binding matches the same path (a binding always wins).

    def _openapi_document(self, request: Request, raw_path: str) -> Response | None:
        found = self.openapi.lookup(raw_path)
        if found is None or self._claimed(raw_path):
            return None
        if request.method not in ("GET", "HEAD"):  # the document exists: 405, not 404
            raise errors.status_error(
                code_pb2.UNIMPLEMENTED,
                f"method {request.method} not allowed for {raw_path}",
                http_status=405,
                reason="METHOD_NOT_ALLOWED",
                headers={"Allow": "GET, HEAD"},
            )
        body, etag = found
        headers = {"Cache-Control": "no-cache", "ETag": etag}
        if writer.matches_if_none_match(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers)
        return Response(body, 200, headers, codec.JSON_TYPE)

    def _claimed(self, raw_path: str) -> bool:
        try:
            self.router.match("GET", raw_path)
        except NoRoute:
            return False
        except (MethodNotAllowed, BadPath):
            pass
        return True


async def _stream_frames(
    messages: AsyncIterator[Message], *, sse: bool, id_field: str | None = None
) -> AsyncIterator[bytes]:
    """grpc-gateway's framing: `{"result": msg}` per line, `{"error": status}` at a failure.
    As Server-Sent Events, a message's `id_field` (the method's `sse_id_field`) is the
    event's `id:`, which a reconnecting client sends back as Last-Event-ID."""
    try:
        async for item in messages:
            event_id = getattr(item, id_field) if sse and id_field else None
            yield _frame({"result": codec.to_jsonable(item)}, sse=sse, event_id=event_id)
    except UpstreamError as exc:
        error = codec.loads(errors.error_body(exc.status))
        yield _frame({"error": error}, sse=sse)


def _frame(document: object, *, sse: bool, event_id: str | None = None) -> bytes:
    data = codec.dumps(document)
    return writer.sse_frame(data, event_id) if sse else data + b"\n"


def _resume_from(binding: Binding, message: Message, last_event_id: str | None) -> None:
    """A Last-Event-ID header (an EventSource reconnecting, WHATWG HTML §9.2.4) into the
    method's `last_event_id_field`, over what the query said; a blank one is ignored."""
    name = binding.behavior.last_event_id_field
    if name is not None and last_event_id is not None and last_event_id.strip():
        setattr(message, name, last_event_id.strip())


def _raw_path(request: Request) -> str:
    raw = request.scope.get("raw_path")
    if raw:
        return bytes(raw).decode("latin-1").split("?", 1)[0]
    return str(request.scope.get("path", "/"))


async def _send_head(response: Response, send: Send) -> None:
    """A HEAD response: the status and header fields the GET would have (Content-Length
    included), no body (RFC 9110 §9.3.2); a stream is closed unread."""
    await send(
        {
            "type": "http.response.start",
            "status": response.status_code,
            "headers": response.raw_headers,
        }
    )
    await send({"type": "http.response.body", "body": b""})
    iterator = getattr(response, "body_iterator", None)
    closing = getattr(iterator, "aclose", None)
    if closing is not None:
        await closing()


def _route_error(
    exc: NoRoute | MethodNotAllowed | BadPath, method: str, raw_path: str
) -> errors.GatewayError:
    if isinstance(exc, NoRoute):
        return errors.status_error(
            code_pb2.NOT_FOUND, f"no route for {method} {raw_path}", reason="NO_ROUTE"
        )
    if isinstance(exc, MethodNotAllowed):
        return errors.status_error(
            code_pb2.UNIMPLEMENTED,
            f"method {method} not allowed for {raw_path}",
            http_status=405,
            reason="METHOD_NOT_ALLOWED",
            headers={"Allow": ", ".join(exc.allowed)},
        )
    return errors.status_error(
        code_pb2.INVALID_ARGUMENT, f"malformed path: {exc}", reason="BAD_PATH"
    )


def _check_request_stream(binding: Binding, plan: conditional.EtagPlan | None) -> None:
    """Raise BindingError for a client- or bidi-streaming binding whose `etag_field`
    is in the request: If-Match names one request, and a stream has many."""
    if binding.client_streaming and plan is not None and plan.request is not None:
        raise BindingError(
            binding.method,
            binding.template.source,
            f"etag_field {plan.name!r} in a streamed request: If-Match has no one request",
        )


def _form_fields(body: bytes) -> list[tuple[str, str]]:
    """An application/x-www-form-urlencoded body's name=value pairs (WHATWG URL
    §5.1, as HTML forms send them). Raises GatewayError 400 (reason INVALID_BODY)
    for a body that is not UTF-8 or has a field without `=` (an empty one included:
    `a=1&&b=2`, a blank body)."""
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise _bad_form("not UTF-8") from None
    for number, piece in enumerate(text.split("&"), start=1):
        if "=" not in piece:
            what = "is empty" if not piece else f"({quoted_excerpt(piece)}) has no '='"
            raise _bad_form(f"field {number} {what}; send name=value pairs joined by '&'")
    return parse_form(text)


def _bad_form(reason: str) -> errors.GatewayError:
    return errors.status_error(
        code_pb2.INVALID_ARGUMENT,
        f"malformed form body: {reason}",
        field_name="body",
        reason="INVALID_BODY",
    )


def _unsupported_media(media: str, send: str) -> errors.GatewayError:
    return errors.status_error(
        code_pb2.INVALID_ARGUMENT,
        f"unsupported content type {media!r}; send {send}",
        http_status=415,
        reason="UNSUPPORTED_MEDIA_TYPE",
    )


def _too_large(limit: int) -> errors.GatewayError:
    return errors.status_error(
        code_pb2.RESOURCE_EXHAUSTED,
        f"request body exceeds {limit} bytes",
        http_status=413,
        reason="BODY_TOO_LARGE",
    )


def _timeout(head: RequestHead, default: float | None) -> float | None:
    """`grpc-timeout` (gRPC wire format, e.g. `500m`) or `X-Server-Timeout` (seconds)."""
    raw = head.get("grpc-timeout")
    if raw is not None:
        match = _GRPC_TIMEOUT.match(raw.strip())
        if match is None:
            raise _bad_timeout("grpc-timeout", "must be 1-8 digits and a unit (H, M, S, m, u, n)")
        return int(match.group(1)) * _GRPC_UNITS[match.group(2)]
    raw = head.get("x-server-timeout")
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < 86400:
        raise _bad_timeout("X-Server-Timeout", "must be a positive number of seconds")
    return value


def _bad_timeout(header: str, reason: str) -> errors.GatewayError:
    return errors.status_error(
        code_pb2.INVALID_ARGUMENT, f"{header} {reason}", field_name=header, reason="BAD_TIMEOUT"
    )

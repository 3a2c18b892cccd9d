"""REST request metrics: an ASGI middleware around the gateway (the gateway itself
stays product-neutral and knows nothing of Prometheus).

Each HTTP request is counted and timed (`http_server_*`, server/observability/
metrics.py) as the last of its response is sent (so a client that has its answer
finds it counted), or when the app ends without one, labelled with its method, the status
sent and the path template of the route that matched, so a path's identifiers never
become label values: the template the gateway put in the scope
(`gateway.app.PATH_PATTERN_KEY`) when it routed the request, else the gateway's
router asked (a 405 is labelled with the path's route, an unrouted path is
`<unmatched>`, the OpenAPI documents are their own paths).
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from typing import Any, Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.app import PATH_PATTERN_KEY
from gateway.openapi import DISCOVERY_PATH, DOCUMENT_PATH
from gateway.router import BadPath, MethodNotAllowed, NoRoute, Router
from server.observability.metrics import HTTP_IN_FLIGHT, HTTP_REQUESTS, HTTP_SECONDS

UNMATCHED: Final = "<unmatched>"
LITERAL_ROUTES_MAX: Final = 1024
PER_API_DOCUMENT: Final = "/openapi/{api}.json"
# RFC 9110 §9 methods plus PATCH (RFC 5789); any other is counted as OTHER, so a
# client cannot mint label values.
METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)

_perf_counter = time.perf_counter
# The scope of the HTTP request being served, for the calls it makes in process.
_HTTP_SCOPE: ContextVar[Scope | None] = ContextVar("orchestrator_http_scope", default=None)


def http_route() -> str | None:
    """The route template of the HTTP request whose in-process call is running (the
    SERVER span's http.route, interceptors/tracing.py); None outside one."""
    scope = _HTTP_SCOPE.get()
    return None if scope is None else scope.get(PATH_PATTERN_KEY)


class HttpMetrics:
    """`app` (the gateway) measured; `router` is the gateway's router, whose templates
    name the routes."""

    def __init__(self, app: ASGIApp, router: Router[Any]) -> None:
        self.app = app
        self._router = router
        self._in_flight = {method: HTTP_IN_FLIGHT.labels(method) for method in METHODS}
        self._in_flight["OTHER"] = HTTP_IN_FLIGHT.labels("OTHER")
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        # (method, path) -> template of the routes without variables (/health, /metrics),
        # so the busiest paths skip the router; paths with identifiers always ask it.
        self._literal_routes: dict[tuple[str, str], str] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"] if scope["method"] in METHODS else "OTHER"
        in_flight = self._in_flight[method]
        status = 500  # what the server answers when the app fails before responding
        recorded = False

        def record() -> None:
            nonlocal recorded
            if recorded:
                return
            recorded = True
            elapsed = _perf_counter() - started
            in_flight.dec()
            route = scope.get(PATH_PATTERN_KEY) or self.route(scope)
            self._record(method, route, status, elapsed)

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                # Recorded before the last of the body goes out, so a client that
                # scrapes /metrics once it has its answer finds the request counted.
                record()
            await send(message)

        in_flight.inc()
        started = _perf_counter()
        token = _HTTP_SCOPE.set(scope)
        try:
            await self.app(scope, receive, sending)
        finally:
            _HTTP_SCOPE.reset(token)
            record()

    def route(self, scope: Scope) -> str:
        """The template of the route `scope`'s path matches, whatever its method."""
        raw = scope.get("raw_path")
        path = bytes(raw).decode("latin-1").split("?", 1)[0] if raw else scope.get("path", "/")
        key = (scope["method"], path)
        known = self._literal_routes.get(key)
        if known is not None:
            return known
        try:
            match = self._router.match(scope["method"], path)
        except MethodNotAllowed as exc:
            if exc.allowed:
                found = self._router.match(exc.allowed[0], path)
                return str(found.target.template.source)
            return UNMATCHED
        except (NoRoute, BadPath):
            if path in (DOCUMENT_PATH, DISCOVERY_PATH):
                return path
            if path.startswith("/openapi/") and path.endswith(".json"):
                return PER_API_DOCUMENT
            return UNMATCHED
        route = str(match.target.template.source)
        if not match.captures and len(self._literal_routes) < LITERAL_ROUTES_MAX:
            # A path without variables is its template: remembered (a few per route).
            self._literal_routes[key] = route
        return route

    def _record(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            labels = (method, route, str(status))
            children = (HTTP_REQUESTS.labels(*labels), HTTP_SECONDS.labels(*labels))
            if route != UNMATCHED or len(self._children) < 10_000:
                self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

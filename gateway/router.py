"""(HTTP method, raw path) -> route and decoded captures, by specificity.

Each HTTP method has a trie keyed by path segment: a dict of literal children plus one
`*` child and one `**` child, so a lookup costs O(path length) however many routes are
registered. The walk tries, at every segment, the literal child, then `*`, then `**`,
backtracking on failure; the first complete match is therefore the most specific one,
whatever the registration order. `/users/me` beats `/users/{id}` beats `/users/{p=**}`.
(grpc-gateway's runtime/mux.go instead tries patterns newest first; vanguard-go's
router.go uses the same trie and precedence as here.)

Percent-decoding follows google/api/http.proto: a variable over one `*` or literal
segment is fully decoded; a multi-segment variable (`{name=shelves/*}`, `{path=**}`)
is decoded except for `%2F`/`%2f`, which stays as written.

Empty segments match nothing, with one exception: a trailing `/` is taken by a
`**` that ends the template, so `/**` matches `/a/` and `{path=**}` captures `a/`
(grpc-gateway keeps the slash in the capture; Envoy drops trailing slashes from
every path, which we do not: `/v1/echo/` is not `/v1/echo`). The root template
`/` matches the path `/` only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Generic, TypeVar
from urllib.parse import unquote_to_bytes

from gateway.template import DeepWildcard, Literal, Segment, Template, Wildcard

__all__ = ["BadPath", "MethodNotAllowed", "NoRoute", "RouteConflictError", "RouteMatch", "Router"]

T = TypeVar("T")

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 method token
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_ENCODED_SLASH = re.compile(r"(%2[Ff])")


class BadPath(ValueError):
    """The request path has a malformed percent-escape or is not UTF-8 (-> 400)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(path, reason)
        self.path = path
        self.reason = reason

    def __str__(self) -> str:
        return f"bad request path {self.path!r}: {self.reason}"


class RouteConflictError(ValueError):
    """Two templates for one method that match exactly the same paths."""

    def __init__(self, method: str, template: Template, existing: Template) -> None:
        super().__init__(method, template, existing)
        self.method = method
        self.template = template
        self.existing = existing

    def __str__(self) -> str:
        return (
            f"{self.method} {self.template.source!r} conflicts with "
            f"{self.method} {self.existing.source!r}, registered before"
        )


class NoRoute(LookupError):
    """No route of any method matches the path (-> 404)."""

    def __init__(self, method: str, path: str) -> None:
        super().__init__(method, path)
        self.method = method
        self.path = path

    def __str__(self) -> str:
        return f"no route for {self.method} {self.path!r}"


class MethodNotAllowed(LookupError):
    """Routes of other methods match the path, none of this one (-> 405 with Allow)."""

    def __init__(self, method: str, path: str, allowed: tuple[str, ...]) -> None:
        super().__init__(method, path, allowed)
        self.method = method
        self.path = path
        self.allowed = allowed  # sorted, upper-case

    def __str__(self) -> str:
        return f"{self.method} not allowed for {self.path!r}; allowed: {', '.join(self.allowed)}"


@dataclass(frozen=True, slots=True)
class RouteMatch(Generic[T]):
    """The winning route, and each bound field path with its decoded value."""

    target: T
    template: Template
    captures: dict[tuple[str, ...], str]


@dataclass(frozen=True, slots=True)
class _Capture:
    field_path: tuple[str, ...]
    start: int  # template segment indexes, as in Variable
    end: int
    single: bool  # one `*` or literal segment: decode fully, %2F included


@dataclass(frozen=True, slots=True)
class _Route(Generic[T]):
    target: T
    template: Template
    deep: int | None  # index of the `**` segment, if any
    captures: tuple[_Capture, ...]
    literal: bool  # every segment a literal: no other route is more specific
    shape: tuple[int, ...]  # per segment 0 literal, 1 `*`, 2 `**`: smaller is more specific


class _Node(Generic[T]):
    __slots__ = ("deep", "leaves", "literals", "star")

    def __init__(self) -> None:
        self.literals: dict[str, _Node[T]] = {}  # keyed by the decoded literal
        self.star: _Node[T] | None = None
        self.deep: _Node[T] | None = None  # its subtree holds only literals
        self.leaves: dict[str | None, _Route[T]] = {}  # keyed by verb

    def child(self, segment: Segment) -> _Node[T]:
        """The child for `segment`, created on first use (registration only)."""
        if isinstance(segment, Literal):
            return self.literals.setdefault(_decode(segment.value, segment.value), _Node())
        if isinstance(segment, Wildcard):
            if self.star is None:
                self.star = _Node()
            return self.star
        if self.deep is None:
            self.deep = _Node()
        return self.deep


class Router(Generic[T]):
    """Routes keyed by (method, template); see the module docstring for the rules."""

    def __init__(self) -> None:
        self._tries: dict[str, _Node[T]] = {}
        self._verbs: set[str] = set()  # every verb of every method, decoded
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, method: str, template: Template, target: T) -> None:
        """Register `target`; RouteConflictError if `method` has the same shape already."""
        if not _TOKEN.fullmatch(method):
            raise ValueError(f"invalid HTTP method {method!r}")
        method = method.upper()
        node = self._tries.setdefault(method, _Node())
        for segment in template.segments:
            node = node.child(segment)
        verb = None if template.verb is None else _decode(template.verb, template.verb)
        existing = node.leaves.get(verb)
        if existing is not None:
            raise RouteConflictError(method, template, existing.template)
        node.leaves[verb] = _route(template, target)
        if verb is not None:
            self._verbs.add(verb)
        self._count += 1

    def match(self, method: str, raw_path: str) -> RouteMatch[T]:
        """Match a still-encoded path (no query string).

        Raises BadPath (400), MethodNotAllowed (405) or NoRoute (404).
        """
        method = method.upper()
        attempts = self._attempts(raw_path)
        trie = self._tries.get(method)
        found = None if trie is None else _find(trie, attempts)
        if found is not None and found[0].literal:
            return _matched(found)  # nothing is more specific than all literals
        # The path belongs to its most specific template among every method's routes
        # (OpenAPI 3.1 §4.8.8: concrete paths before templated ones): `/quotas/summary`
        # of GET is not `/quotas/{id}` of DELETE, so DELETE there is 405, Allow: GET.
        ranked = {
            other: hit[0].shape
            for other, node in self._tries.items()
            if (hit := (found if other == method else _find(node, attempts))) is not None
        }
        if ranked:
            best = min(ranked.values())
            if found is not None and ranked[method] == best:
                return _matched(found)
            allowed = tuple(sorted(other for other, rank in ranked.items() if rank == best))
            raise MethodNotAllowed(method, raw_path, allowed)
        raise NoRoute(method, raw_path)

    def _attempts(self, raw_path: str) -> list[_Path]:
        """The ways to read the path: with `:verb` split off when a route has that verb, then
        whole. Only the last segment is split, so `/users/user:123` still fits `{id}`."""
        if not raw_path.startswith("/"):
            return []
        raw = raw_path[1:].split("/") if raw_path != "/" else []
        decoded = [_decode(segment, raw_path) for segment in raw]
        if "" in raw[:-1]:  # `*` never matches nothing, nor does a literal
            return []
        # A trailing `/` leaves one empty last segment: only a `**` that ends the
        # template takes it (`/**` matches `/a/`, as grpc-gateway and Envoy do), so
        # `/v1/echo/` is still not `/v1/echo`.
        whole = _Path(raw, decoded, None)
        colon = raw[-1].rfind(":") if raw else -1
        if colon <= 0:
            return [whole]
        verb = _decode(raw[-1][colon + 1 :], raw_path)
        if verb not in self._verbs:
            return [whole]
        head = raw[-1][:colon]
        split = _Path([*raw[:-1], head], [*decoded[:-1], _decode(head, raw_path)], verb)
        return [split, whole]


@dataclass(frozen=True, slots=True)
class _Path:
    raw: list[str]  # still percent-encoded, for multi-segment captures
    decoded: list[str]
    verb: str | None


def _route(template: Template, target: T) -> _Route[T]:
    deep = next((i for i, s in enumerate(template.segments) if isinstance(s, DeepWildcard)), None)
    captures = tuple(
        _Capture(
            v.field_path,
            v.start,
            v.end,
            v.end - v.start == 1 and not isinstance(template.segments[v.start], DeepWildcard),
        )
        for v in template.variables
    )
    shape = tuple(
        0 if isinstance(s, Literal) else 1 if isinstance(s, Wildcard) else 2
        for s in template.segments
    )
    return _Route(target, template, deep, captures, not any(shape), shape)


def _matched(found: tuple[_Route[T], _Path]) -> RouteMatch[T]:
    route, path = found
    return RouteMatch(route.target, route.template, _captures(route, path))


def _find(trie: _Node[T], attempts: list[_Path]) -> tuple[_Route[T], _Path] | None:
    for path in attempts:
        route = _walk(trie, path.decoded, 0, path.verb)
        if route is not None:
            return route, path
    return None


def _walk(node: _Node[T], segments: list[str], index: int, verb: str | None) -> _Route[T] | None:
    """Depth-first, literal before `*` before `**`: the first hit is the most specific."""
    route: _Route[T] | None = None
    if index == len(segments):
        route = node.leaves.get(verb)
    else:
        child = node.literals.get(segments[index])
        if child is not None:
            route = _walk(child, segments, index + 1, verb)
        if route is None and node.star is not None and segments[index]:
            route = _walk(node.star, segments, index + 1, verb)
    if route is None and node.deep is not None:
        # `**` takes as few segments as it can; only literals follow it.
        for rest in range(index, len(segments) + 1):
            route = _walk(node.deep, segments, rest, verb)
            if route is not None:
                break
    return route


def _captures(route: _Route[T], path: _Path) -> dict[tuple[str, ...], str]:
    # `**` took `extra + 1` segments: shift the indexes of what follows it.
    extra = len(path.raw) - len(route.template.segments)
    captures: dict[tuple[str, ...], str] = {}
    for capture in route.captures:
        start, end = capture.start, capture.end
        if route.deep is not None:
            start += extra if start > route.deep else 0
            end += extra if end > route.deep else 0
        if capture.single:
            captures[capture.field_path] = path.decoded[start]
        else:
            captures[capture.field_path] = "/".join(map(_decode_keep_slash, path.raw[start:end]))
    return captures


def _decode(text: str, path: str) -> str:
    """Percent-decode one segment as UTF-8; malformed input is the client's fault."""
    if "%" not in text:
        return text
    bad = _BAD_ESCAPE.search(text)
    if bad is not None:
        raise BadPath(path, f"invalid percent-escape {text[bad.start() : bad.start() + 3]!r}")
    try:
        return unquote_to_bytes(text).decode("utf-8")
    except UnicodeDecodeError:
        raise BadPath(path, "percent-escapes do not decode to UTF-8") from None


def _decode_keep_slash(segment: str) -> str:
    # Splitting on an escaped '/' cannot cut a UTF-8 sequence: 0x2F is ASCII.
    parts = _ENCODED_SLASH.split(segment)
    return "".join(part if i % 2 else _decode(part, segment) for i, part in enumerate(parts))

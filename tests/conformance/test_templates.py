"""HttpRule path-template conformance: grammar and routing cases as data.

Each case names where its expectation comes from:

- `http.proto`: the comments of google/api/http.proto (third_party/proto/google/api/).
- `envoy:<Test>`: grpc-httpjson-transcoding (Envoy's transcoder), src/path_matcher_test.cc.
- `grpc-gateway:<file>`: grpc-ecosystem/grpc-gateway, internal/httprule or runtime/mux.go.
- `ours`: this gateway's rule where the references are silent or disagree; the
  disagreement is spelled out in the case's note.

Known failures are listed in expected_failures.txt, one `case_id  # reason` per line;
they run as strict xfails, so a case that starts passing must leave the list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gateway.router import BadPath, MethodNotAllowed, NoRoute, RouteConflictError, Router
from gateway.template import (
    DeepWildcard,
    Literal,
    Template,
    TemplateError,
    Wildcard,
    parse_template,
)

EXPECTED_FAILURES_FILE = Path(__file__).with_name("expected_failures.txt")


# --- Outcomes ------------------------------------------------------------------------


@dataclass(frozen=True)
class Parses:
    """The template is valid; `canonical` re-renders its AST with every variable as
    `{path=segments}`, so `{id}` reads `{id=*}`."""

    canonical: str


@dataclass(frozen=True)
class Rejected:
    reason: str
    position: int | None


@dataclass(frozen=True)
class Routed:
    target: str  # the route spec "METHOD /template" that won
    captures: dict[str, str] = field(default_factory=dict)  # dotted field path -> value


@dataclass(frozen=True)
class Status:
    code: int  # 400 BadPath, 404 NoRoute, 405 MethodNotAllowed
    allowed: tuple[str, ...] = ()


@dataclass(frozen=True)
class Conflict:
    rejected: str  # the route spec that add() refused


@dataclass(frozen=True)
class GrammarCase:
    id: str
    ref: str
    template: str
    expect: Parses | Rejected


@dataclass(frozen=True)
class MatchCase:
    id: str
    ref: str
    routes: tuple[str, ...]
    request: str  # "METHOD /raw/path"
    expect: Routed | Status | Conflict
    note: str = ""


def ok(case_id: str, ref: str, template: str, canonical: str | None = None) -> GrammarCase:
    return GrammarCase(case_id, ref, template, Parses(canonical or template))


def bad(case_id: str, ref: str, template: str, reason: str, position: int | None) -> GrammarCase:
    return GrammarCase(case_id, ref, template, Rejected(reason, position))


# --- Grammar -------------------------------------------------------------------------

# fmt: off
GRAMMAR_CASES: list[GrammarCase] = [
    ok("grammar/name-messages", "http.proto", "/v1/{name=messages/*}"),
    ok("grammar/message-id", "http.proto", "/v1/messages/{message_id}",
       "/v1/messages/{message_id=*}"),
    ok(
        "grammar/nested-field-path",
        "http.proto",
        "/v1/messages/{message_id}/{sub.subfield}",
        "/v1/messages/{message_id=*}/{sub.subfield=*}",
    ),
    ok(
        "grammar/two-variables",
        "http.proto",
        "/v1/users/{user_id}/messages/{message_id}",
        "/v1/users/{user_id=*}/messages/{message_id=*}",
    ),
    ok("grammar/explicit-star", "http.proto", "/v1/{var=*}"),
    ok("grammar/multi-segment-variable", "http.proto", "/v1/{var=foo/*}"),
    ok("grammar/deep-variable", "http.proto", "/v1/{var=**}"),
    ok("grammar/custom-verb", "http.proto", "/v1/{name=messages/*}:cancel"),
    ok("grammar/verb-after-variable", "grpc-gateway:parse.go", "/v1/users/{id}:undelete",
       "/v1/users/{id=*}:undelete"),
    ok("grammar/colon-in-earlier-segment", "grpc-gateway:parse.go", "/v1/a:b/c"),
    bad("grammar/colon-inside-variable", "http.proto", "/v1/{name=a:b}",
        "a verb (':') may only end the template, not a variable", 11),
    ok("grammar/deep-then-literal", "envoy:ConstantSuffixesWithVariable", "/v1/**/meta"),
    ok("grammar/deep-inside-variable-then-literals", "envoy:ConstantSuffixesWithVariable",
       "/a/{x=b/*/**/y/z}/foo"),
    ok("grammar/star-then-deep", "envoy:WildCardMatches", "/c/*/d/**"),
    ok("grammar/pchar-literal", "grpc-gateway:parse.go", "/v1/~a-b_c.d!$&'()+,;=@"),
    ok("grammar/percent-escaped-literal", "http.proto", "/v1/a%20b%2Fc"),
    bad("grammar/no-leading-slash", "grpc-gateway:parse.go", "v1/items", "must start with '/'", 0),
    ok("grammar/root-only", "envoy:PathMatcher root; grpc-gateway:parse.go", "/"),
    bad("grammar/double-slash", "http.proto", "/v1//items", "empty segment", 4),
    bad("grammar/trailing-slash", "http.proto", "/v1/items/", "empty segment", 10),
    bad("grammar/unclosed-brace", "http.proto", "/v1/{id", "unclosed '{'", 4),
    bad("grammar/unbalanced-brace", "http.proto", "/v1/id}", "unbalanced '}'", 6),
    bad("grammar/nested-variable", "http.proto", "/v1/{a={b}}",
        "nested variables are not allowed", 7),
    bad("grammar/empty-field-path", "http.proto", "/v1/{}", "empty field path", 5),
    bad("grammar/ident-starts-with-digit", "grpc-gateway:parse.go", "/v1/{1a}",
        "invalid character '1' in field path", 5),
    bad("grammar/empty-ident", "http.proto", "/v1/{a..b}", "empty identifier in field path", 7),
    bad("grammar/duplicate-field-path", "ours", "/v1/{id}/{id}",
        "field path 'id' appears twice", 10),
    bad("grammar/two-deep-wildcards", "envoy:InvalidTemplates", "/a/**/**",
        "more than one '**'", 6),
    bad("grammar/deep-then-star", "envoy:InvalidTemplates", "/a/**/*",
        "only literal segments may follow '**'", 6),
    bad("grammar/deep-then-literal-then-star", "envoy:InvalidTemplates", "/a/**/foo/*",
        "only literal segments may follow '**'", 10),
    bad("grammar/deep-variable-then-variable", "envoy:InvalidTemplates", "/a/{x=b/**}/{y=*}",
        "only literal segments may follow '**'", 15),
    bad("grammar/empty-verb", "http.proto", "/v1/items:", "empty verb", 9),
    bad("grammar/bad-percent-escape", "grpc-gateway:parse.go", "/v1/a%zz",
        "invalid percent-escape", 5),
    bad("grammar/space-in-literal", "grpc-gateway:parse.go", "/v1/a b",
        "invalid character ' ' in literal", 5),
    bad("grammar/query-in-literal", "grpc-gateway:parse.go", "/v1/a?b",
        "invalid character '?' in literal", 5),
]
# fmt: on


# --- Matching ------------------------------------------------------------------------

# fmt: off
MATCH_CASES: list[MatchCase] = [
    # http.proto's own examples.
    MatchCase("match/http-proto-name", "http.proto", ("GET /v1/{name=messages/*}",),
              "GET /v1/messages/123456",
              Routed("GET /v1/{name=messages/*}", {"name": "messages/123456"})),
    MatchCase("match/http-proto-message-id", "http.proto", ("GET /v1/messages/{message_id}",),
              "GET /v1/messages/123456",
              Routed("GET /v1/messages/{message_id}", {"message_id": "123456"})),
    MatchCase("match/http-proto-additional-binding", "http.proto",
              ("GET /v1/messages/{message_id}", "GET /v1/users/{user_id}/messages/{message_id}"),
              "GET /v1/users/me/messages/123456",
              Routed("GET /v1/users/{user_id}/messages/{message_id}",
                     {"user_id": "me", "message_id": "123456"})),
    MatchCase("match/http-proto-sub-field", "http.proto",
              ("GET /v1/messages/{message_id}/{sub.subfield}",), "GET /v1/messages/1/foo",
              Routed("GET /v1/messages/{message_id}/{sub.subfield}",
                     {"message_id": "1", "sub.subfield": "foo"})),
    # Variable bindings.
    MatchCase("match/multi-segment-variables", "envoy:VariableBindings",
              ("GET /{x=a/*}/b/{y=*}/c",), "GET /a/hello/b/world/c",
              Routed("GET /{x=a/*}/b/{y=*}/c", {"x": "a/hello", "y": "world"})),
    MatchCase("match/deep-between-literals", "envoy:VariableBindings",
              ("GET /alpha/{x=*}/beta/{y=**}/gamma",), "GET /alpha/dog/beta/eat/bones/gamma",
              Routed("GET /alpha/{x=*}/beta/{y=**}/gamma", {"x": "dog", "y": "eat/bones"})),
    MatchCase("match/prefixed-deep-variable", "envoy:VariableBindings",
              ("GET /a/{x=b/*}/{y=d/**}",), "GET /a/b/zoo/d/animal/tiger",
              Routed("GET /a/{x=b/*}/{y=d/**}", {"x": "b/zoo", "y": "d/animal/tiger"})),
    MatchCase("match/leading-deep-variable", "envoy:VariableBindings", ("GET /{x=**}/a/b",),
              "GET /foo/bar/a/b", Routed("GET /{x=**}/a/b", {"x": "foo/bar"})),
    # Specificity.
    MatchCase("match/literal-beats-star", "ours", ("GET /users/{id}", "GET /users/me"),
              "GET /users/me", Routed("GET /users/me")),
    MatchCase("match/star-when-literal-misses", "ours", ("GET /users/me", "GET /users/{id}"),
              "GET /users/123", Routed("GET /users/{id}", {"id": "123"})),
    MatchCase("match/star-beats-deep", "envoy:WildCardMatches",
              ("GET /c/*/d/**", "GET /c/*/d/e", "GET /c/f/d/e"), "GET /c/x/d/e",
              Routed("GET /c/*/d/e")),
    MatchCase("match/literal-beats-star-deeper", "envoy:WildCardMatches",
              ("GET /c/*/d/**", "GET /c/*/d/e", "GET /c/f/d/e"), "GET /c/f/d/e",
              Routed("GET /c/f/d/e")),
    MatchCase("match/backtrack-out-of-literal", "ours",
              ("GET /users/me/settings", "GET /users/{id}/profile"), "GET /users/me/profile",
              Routed("GET /users/{id}/profile", {"id": "me"})),
    MatchCase("match/deep-zero-segments-then-literal", "ours", ("GET /v1/**/meta",), "GET /v1/meta",
              Routed("GET /v1/**/meta")),
    MatchCase("match/deep-many-segments-then-literal", "ours", ("GET /v1/**/meta",),
              "GET /v1/a/b/meta", Routed("GET /v1/**/meta")),
    MatchCase("match/deep-matches-root", "envoy:WildCardMatchesRoot", ("GET /**",), "GET /",
              Routed("GET /**")),
    # 404: partial, longer, shorter, empty segments.
    MatchCase("match/no-partial-match", "envoy:RejectPartialMatches",
              ("GET /prefix/middle/suffix", "GET /prefix/middle", "GET /prefix"),
              "GET /prefix/middle/other", Status(404)),
    MatchCase("match/path-longer-than-route", "envoy:LookupReturnsNullForOverspecifiedPath",
              ("GET /a/b/c", "GET /a/b"), "GET /a/b/c/d", Status(404)),
    MatchCase("match/path-shorter-than-route", "envoy:ReturnNullvoidSharedPtrForUnderspecifiedPath",
              ("GET /a/b/c/d",), "GET /a/b/c", Status(404)),
    MatchCase("match/trailing-slash", "ours", ("GET /v1/echo",), "GET /v1/echo/", Status(404),
              note="Envoy drops a trailing slash from every path; here only a `**` that ends "
                   "the template takes it (test_root_and_trailing_routes.py)."),
    MatchCase("match/empty-segment", "envoy:WildCardMatches", ("GET /v1/{a}/{b}",), "GET /v1//x",
              Status(404)),
    # Verbs.
    MatchCase("match/custom-verb", "http.proto", ("POST /v1/{name=messages/*}:cancel",),
              "POST /v1/messages/7:cancel",
              Routed("POST /v1/{name=messages/*}:cancel", {"name": "messages/7"})),
    MatchCase("match/verb-after-deep-variable", "envoy:VariableBindingsWithCustomVerb",
              ("GET /a/{y=d/**}:verb",), "GET /a/d/animal/tiger:verb",
              Routed("GET /a/{y=d/**}:verb", {"y": "d/animal/tiger"})),
    MatchCase("match/verb-after-leading-deep", "envoy:VariableBindingsWithCustomVerb",
              ("GET /{x=**}/b:verb",), "GET /foo/bar/baz/b:verb",
              Routed("GET /{x=**}/b:verb", {"x": "foo/bar/baz"})),
    MatchCase("match/verb-only-on-last-segment", "envoy:CustomVerbMatch2", ("GET /*/*:verb",),
              "GET /some:verb/const:verb", Routed("GET /*/*:verb")),
    MatchCase("match/verb-then-slash", "envoy:CustomVerbMatches", ("GET /some/*:verb",),
              "GET /some/other:verb/", Status(404)),
    MatchCase("match/colon-before-last-slash", "envoy:CustomVerbMatch4", ("GET /foo/*/hello",),
              "GET /foo/other:verb/hello", Routed("GET /foo/*/hello")),
    MatchCase("match/colon-without-registered-verb", "ours", ("GET /foo/*",), "GET /foo/other:verb",
              Routed("GET /foo/*"),
              note="Envoy answers 404 here and calls it a bug (CustomVerbMatch3)."),
    MatchCase("match/colon-in-id", "ours", ("GET /users/{id}",), "GET /users/user:123",
              Routed("GET /users/{id}", {"id": "user:123"})),
    MatchCase("match/verb-falls-back-to-unsplit", "ours",
              ("GET /users/{id}", "POST /users/{id}:undelete"), "GET /users/42:undelete",
              Routed("GET /users/{id}", {"id": "42:undelete"})),
    MatchCase("match/verb-route-needs-verb", "ours", ("POST /v1/{name=messages/*}:cancel",),
              "POST /v1/messages/7", Status(404)),
    MatchCase("match/encoded-colon-is-not-verb", "grpc-gateway:mux.go",
              ("POST /users/{id}:undelete",), "POST /users/42%3Aundelete", Status(404)),
    # Percent-decoding.
    MatchCase("match/single-segment-decodes-slash", "envoy:PercentEscapesUnescapedForSingleSegment",
              ("GET /a/{x}/c",), "GET /a/p%20q%2Fr/c", Routed("GET /a/{x}/c", {"x": "p q/r"})),
    MatchCase("match/multi-segment-keeps-slash", "envoy:PercentEscapesNotUnescapedForMultiSegment1",
              ("GET /a/{x=p/*/q/*}/c",), "GET /a/p/foo%20foo/q/bar%2Fbar/c",
              Routed("GET /a/{x=p/*/q/*}/c", {"x": "p/foo foo/q/bar%2Fbar"})),
    MatchCase("match/deep-keeps-slash", "envoy:PercentEscapesNotUnescapedForMultiSegment2",
              ("GET /a/{x=**}/c",), "GET /a/p/foo%20foo/q/bar%2Fbar/c",
              Routed("GET /a/{x=**}/c", {"x": "p/foo foo/q/bar%2Fbar"})),
    MatchCase("match/deep-keeps-lowercase-slash", "http.proto", ("GET /d/{x=**}",), "GET /d/a%2fb",
              Routed("GET /d/{x=**}", {"x": "a%2fb"})),
    MatchCase("match/multi-segment-decodes-other-reserved", "http.proto", ("GET /a/{x=**}/c",),
              "GET /a/%21%23%24%26%27%28%29%2A%2B%2C%2F%3A%3B%3D%3F%40%5B%5D/c",
              Routed("GET /a/{x=**}/c", {"x": "!#$&'()*+,%2F:;=?@[]"}),
              note="HttpRule: all but %2F decoded. Envoy keeps every reserved escape "
                   "(OnlyUnreservedCharsAreUnescapedForMultiSegmentMatch), as does http.proto's "
                   "Http.fully_decode_reserved_expansion=false default."),
    MatchCase("match/utf8-capture", "http.proto", ("GET /a/{x}",), "GET /a/caf%C3%A9",
              Routed("GET /a/{x}", {"x": "café"})),
    MatchCase("match/literal-compared-decoded", "http.proto", ("GET /v1/users",), "GET /v1/%75sers",
              Routed("GET /v1/users")),
    MatchCase("match/bad-percent-escape", "grpc-gateway:mux.go", ("GET /a/{x}",), "GET /a/%zz",
              Status(400)),
    MatchCase("match/escape-not-utf8", "ours", ("GET /a/{x}",), "GET /a/%C3", Status(400)),
    # Methods: 405 versus 404.
    MatchCase("match/method-not-allowed", "grpc-gateway:mux.go",
              ("GET /v1/items", "POST /v1/items"), "PUT /v1/items", Status(405, ("GET", "POST"))),
    MatchCase("match/method-not-allowed-custom", "http.proto", ("SEARCH /v1/items",),
              "GET /v1/items", Status(405, ("SEARCH",))),
    MatchCase("match/custom-method", "http.proto", ("SEARCH /v1/items",), "search /v1/items",
              Routed("SEARCH /v1/items")),
    MatchCase("match/other-method-other-path", "grpc-gateway:mux.go", ("GET /v1/items",),
              "POST /v1/other", Status(404)),
    MatchCase("match/different-method-same-shape", "ours", ("GET /v1/{id}", "DELETE /v1/{id}"),
              "DELETE /v1/1", Routed("DELETE /v1/{id}", {"id": "1"})),
    MatchCase("match/different-verb-same-shape", "ours", ("POST /v1/{id}:a", "POST /v1/{id}:b"),
              "POST /v1/1:b", Routed("POST /v1/{id}:b", {"id": "1"})),
    # Conflicts at registration.
    MatchCase("conflict/variable-names-differ", "ours", ("GET /v1/{id}", "GET /v1/{name}"), "",
              Conflict("GET /v1/{name}")),
    MatchCase("conflict/variable-over-literal", "ours",
              ("GET /v1/{name=a/*}", "GET /v1/a/{id}"), "", Conflict("GET /v1/a/{id}")),
]
# fmt: on


# --- Runner --------------------------------------------------------------------------


def load_expected_failures(path: Path) -> dict[str, str]:
    """`case_id  # reason` per line; blank lines and `#` comment lines are skipped."""
    failures: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        case_id, _, reason = (part.strip() for part in text.partition("#"))
        if not case_id or " " in case_id or not reason:
            raise ValueError(f"{path.name}:{number}: expected 'case_id  # reason', got {line!r}")
        failures[case_id] = reason
    return failures


EXPECTED_FAILURES = load_expected_failures(EXPECTED_FAILURES_FILE)
OWN_PREFIXES = frozenset({"grammar", "match", "conflict"})
ALL_CASES: list[GrammarCase | MatchCase] = [*GRAMMAR_CASES, *MATCH_CASES]


def cases(table: Sequence[GrammarCase | MatchCase]) -> list[Any]:
    return [
        pytest.param(
            case,
            id=case.id,
            marks=[pytest.mark.xfail(reason=EXPECTED_FAILURES[case.id], strict=True)]
            if case.id in EXPECTED_FAILURES
            else [],
        )
        for case in table
    ]


def canonical(template: Template) -> str:
    names = {Literal: "", Wildcard: "*", DeepWildcard: "**"}
    parts = [getattr(segment, "value", names[type(segment)]) for segment in template.segments]
    for variable in reversed(template.variables):
        inner = "/".join(parts[variable.start : variable.end])
        parts[variable.start : variable.end] = [f"{{{'.'.join(variable.field_path)}={inner}}}"]
    return "/" + "/".join(parts) + ("" if template.verb is None else f":{template.verb}")


def observe(case: MatchCase) -> Routed | Status | Conflict:
    router: Router[str] = Router()
    for spec in case.routes:
        method, source = spec.split(" ", 1)
        try:
            router.add(method, parse_template(source), spec)
        except RouteConflictError:
            return Conflict(spec)
    assert case.request, "a conflict was expected but every route was added"
    method, path = case.request.split(" ", 1)
    try:
        match = router.match(method, path)
    except BadPath:
        return Status(400)
    except MethodNotAllowed as error:
        return Status(405, error.allowed)
    except NoRoute:
        return Status(404)
    return Routed(match.target, {".".join(path): value for path, value in match.captures.items()})


@pytest.mark.parametrize("case", cases(GRAMMAR_CASES))
def test_grammar(case: GrammarCase) -> None:
    try:
        outcome: Parses | Rejected = Parses(canonical(parse_template(case.template)))
    except TemplateError as error:
        outcome = Rejected(error.reason, error.position)
    assert outcome == case.expect


@pytest.mark.parametrize("case", cases(MATCH_CASES))
def test_match(case: MatchCase) -> None:
    assert observe(case) == case.expect


def test_case_ids_are_unique() -> None:
    ids = [case.id for case in ALL_CASES]
    assert sorted(case_id for case_id in set(ids) if ids.count(case_id) > 1) == []


def test_expected_failures_name_existing_cases() -> None:
    # The file is shared by every conformance table; this one owns grammar/, match/, conflict/.
    known = {case.id for case in ALL_CASES}
    mine = {case_id for case_id in EXPECTED_FAILURES if case_id.split("/", 1)[0] in OWN_PREFIXES}
    assert sorted(mine - known) == []


def test_expected_failures_format(tmp_path: Path) -> None:
    listed = tmp_path / "expected_failures.txt"
    listed.write_text("# header\n\nmatch/a  # not yet\ngrammar/b # why\n", encoding="utf-8")
    assert load_expected_failures(listed) == {"match/a": "not yet", "grammar/b": "why"}
    listed.write_text("match/a\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"expected_failures.txt:1: expected 'case_id  # reason'"):
        load_expected_failures(listed)

"""gateway.router: specificity, verbs, percent-decoding, 404/405, conflicts."""

from __future__ import annotations

import dataclasses
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.router import (
    BadPath,
    MethodNotAllowed,
    NoRoute,
    RouteConflictError,
    RouteMatch,
    Router,
)
from gateway.template import parse_template


def make_router(specs: list[str]) -> Router[str]:
    """Each spec is "METHOD /template" and is also the route's target."""
    router: Router[str] = Router()
    for spec in specs:
        method, source = spec.split(" ", 1)
        router.add(method, parse_template(source), spec)
    return router


def route(router: Router[str], request: str) -> tuple[str, dict[str, str]]:
    method, path = request.split(" ", 1)
    match = router.match(method, path)
    assert match.template.source == match.target.split(" ", 1)[1]
    return match.target, {".".join(field): value for field, value in match.captures.items()}


ORDERS = pytest.mark.parametrize(
    "order", [1, -1], ids=["registered-forward", "registered-reversed"]
)

SPECIFICITY_ROUTES = [
    "GET /users/{id}",
    "GET /users/me",
    "GET /users/me/settings",
    "GET /users/{id}/settings",
    "GET /users/{path=**}",
    "GET /v1/**/meta",
    "GET /v1/{name=shelves/*/books/*}",
    "GET /v1/{name=shelves/*}/books/featured",
    "GET /files/{path=**}",
    "GET /files/{path=**}/raw",
]
SPECIFICITY = [
    ("literal-beats-star", "GET /users/me", "GET /users/me", {}),
    ("star", "GET /users/42", "GET /users/{id}", {"id": "42"}),
    ("literal-then-literal", "GET /users/me/settings", "GET /users/me/settings", {}),
    ("star-then-literal", "GET /users/42/settings", "GET /users/{id}/settings", {"id": "42"}),
    ("backtrack-to-deep", "GET /users/me/x", "GET /users/{path=**}", {"path": "me/x"}),
    ("deep-zero-segments", "GET /users", "GET /users/{path=**}", {"path": ""}),
    ("deep-then-literal-zero", "GET /v1/meta", "GET /v1/**/meta", {}),
    ("deep-then-literal-many", "GET /v1/a/b/meta", "GET /v1/**/meta", {}),
    (
        "later-literal-beats-star",
        "GET /v1/shelves/1/books/featured",
        "GET /v1/{name=shelves/*}/books/featured",
        {"name": "shelves/1"},
    ),
    (
        "multi-segment-variable",
        "GET /v1/shelves/1/books/2",
        "GET /v1/{name=shelves/*/books/*}",
        {"name": "shelves/1/books/2"},
    ),
    ("deep-suffix-beats-deep", "GET /files/a/b/raw", "GET /files/{path=**}/raw", {"path": "a/b"}),
    ("deep-suffix-empty", "GET /files/raw", "GET /files/{path=**}/raw", {"path": ""}),
    ("deep-suffix-inside", "GET /files/a/raw/b", "GET /files/{path=**}", {"path": "a/raw/b"}),
]


@ORDERS
@pytest.mark.parametrize(
    ("request_line", "target", "captures"),
    [case[1:] for case in SPECIFICITY],
    ids=[case[0] for case in SPECIFICITY],
)
def test_specificity_not_registration_order(
    order: int, request_line: str, target: str, captures: dict[str, str]
) -> None:
    router = make_router(SPECIFICITY_ROUTES[::order])
    assert route(router, request_line) == (target, captures)


VERB_ROUTES = [
    "GET /users/{id}",
    "POST /users/{id}:undelete",
    "GET /v1/{name=messages/*}",
    "POST /v1/{name=messages/*}:cancel",
    "GET /v1/{name=files/**}:download",
]
VERBS = [
    ("colon-without-known-verb", "GET /users/user:123", "GET /users/{id}", {"id": "user:123"}),
    ("several-colons", "GET /users/a:b:c", "GET /users/{id}", {"id": "a:b:c"}),
    ("verb-split", "POST /users/42:undelete", "POST /users/{id}:undelete", {"id": "42"}),
    ("method-case", "post /users/42:undelete", "POST /users/{id}:undelete", {"id": "42"}),
    ("known-verb-other-method", "GET /users/42:undelete", "GET /users/{id}", {"id": "42:undelete"}),
    ("encoded-colon-is-data", "GET /users/42%3Aundelete", "GET /users/{id}", {"id": "42:undelete"}),
    ("encoded-verb", "POST /users/42:%75ndelete", "POST /users/{id}:undelete", {"id": "42"}),
    (
        "verb-after-multi-segment",
        "POST /v1/messages/7:cancel",
        "POST /v1/{name=messages/*}:cancel",
        {"name": "messages/7"},
    ),
    (
        "unsplit-fallback-multi-segment",
        "GET /v1/messages/7:cancel",
        "GET /v1/{name=messages/*}",
        {"name": "messages/7:cancel"},
    ),
    (
        "verb-after-deep",
        "GET /v1/files/a/b:download",
        "GET /v1/{name=files/**}:download",
        {"name": "files/a/b"},
    ),
    (
        "verb-after-empty-deep",
        "GET /v1/files:download",
        "GET /v1/{name=files/**}:download",
        {"name": "files"},
    ),
]


@ORDERS
@pytest.mark.parametrize(
    ("request_line", "target", "captures"),
    [case[1:] for case in VERBS],
    ids=[case[0] for case in VERBS],
)
def test_verbs(order: int, request_line: str, target: str, captures: dict[str, str]) -> None:
    router = make_router(VERB_ROUTES[::order])
    assert route(router, request_line) == (target, captures)


@pytest.mark.parametrize(
    ("request_line", "allowed"),
    [
        ("POST /v1/messages/7", ("GET",)),
        ("POST /users/42", ("GET",)),
        ("POST /users/42%3Aundelete", ("GET",)),
        ("POST /users/:undelete", ("GET",)),
        ("DELETE /users/42:undelete", ("GET", "POST")),
    ],
    ids=["no-verb", "no-verb-single", "encoded-colon", "empty-before-verb", "both-readings"],
)
def test_verb_routes_and_405(request_line: str, allowed: tuple[str, ...]) -> None:
    method, path = request_line.split(" ", 1)
    with pytest.raises(MethodNotAllowed) as caught:
        make_router(VERB_ROUTES).match(method, path)
    assert caught.value.allowed == allowed


DECODING_ROUTES = [
    "GET /a/{x}/c",
    "GET /m/{x=p/*/q/*}/c",
    "GET /d/{x=**}",
    "GET /lit/caf%C3%A9",
    "GET /v1/users",
    "GET /one/{x=only}",
]
DECODING = [
    ("single-full-decode", "GET /a/p%20q%2Fr/c", "GET /a/{x}/c", {"x": "p q/r"}),
    ("single-lowercase-slash", "GET /a/%2f/c", "GET /a/{x}/c", {"x": "/"}),
    ("single-utf8", "GET /a/caf%C3%A9/c", "GET /a/{x}/c", {"x": "café"}),
    ("single-utf8-lowercase-hex", "GET /a/caf%c3%a9/c", "GET /a/{x}/c", {"x": "café"}),
    ("single-raw-non-ascii", "GET /a/café/c", "GET /a/{x}/c", {"x": "café"}),
    ("plus-is-not-space", "GET /a/a+b/c", "GET /a/{x}/c", {"x": "a+b"}),
    ("percent-itself", "GET /a/100%25/c", "GET /a/{x}/c", {"x": "100%"}),
    (
        "multi-keeps-slash",
        "GET /m/p/foo%20foo/q/bar%2Fbar/c",
        "GET /m/{x=p/*/q/*}/c",
        {"x": "p/foo foo/q/bar%2Fbar"},
    ),
    ("deep-keeps-slash-as-written", "GET /d/a%2fb/c%3Fd", "GET /d/{x=**}", {"x": "a%2fb/c?d"}),
    ("deep-decodes-escaped-percent", "GET /d/%25%32%46", "GET /d/{x=**}", {"x": "%2F"}),
    ("deep-single-segment", "GET /d/a%2Fb", "GET /d/{x=**}", {"x": "a%2Fb"}),
    ("literal-vs-raw", "GET /lit/café", "GET /lit/caf%C3%A9", {}),
    ("literal-vs-lowercase", "GET /lit/caf%c3%a9", "GET /lit/caf%C3%A9", {}),
    ("literal-vs-encoded-path", "GET /v1/%75sers", "GET /v1/users", {}),
    ("variable-over-literal", "GET /one/%6Fnly", "GET /one/{x=only}", {"x": "only"}),
]


@pytest.mark.parametrize(
    ("request_line", "target", "captures"),
    [case[1:] for case in DECODING],
    ids=[case[0] for case in DECODING],
)
def test_percent_decoding(request_line: str, target: str, captures: dict[str, str]) -> None:
    assert route(make_router(DECODING_ROUTES), request_line) == (target, captures)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/a/%zz/c", "bad request path '/a/%zz/c': invalid percent-escape '%zz'"),
        ("/a/%2/c", "bad request path '/a/%2/c': invalid percent-escape '%2'"),
        ("/a/x%/c", "bad request path '/a/x%/c': invalid percent-escape '%'"),
        ("/a/%C3/c", "bad request path '/a/%C3/c': percent-escapes do not decode to UTF-8"),
        ("/unrouted/%zz", "bad request path '/unrouted/%zz': invalid percent-escape '%zz'"),
        ("/a/x/c:%zz", "bad request path '/a/x/c:%zz': invalid percent-escape '%zz'"),
    ],
    ids=["bad-hex", "truncated", "lone-percent", "not-utf8", "before-routing", "in-verb"],
)
def test_bad_path(path: str, message: str) -> None:
    with pytest.raises(BadPath) as caught:
        make_router(DECODING_ROUTES).match("GET", path)
    assert str(caught.value) == message
    assert isinstance(caught.value, ValueError)
    assert caught.value.path == path


CRUD_ROUTES = [
    "GET /v1/items",
    "POST /v1/items",
    "GET /v1/items/{id}",
    "PATCH /v1/items/{id}",
    "DELETE /v1/items/{id}",
    "SEARCH /v1/items",
]


@pytest.mark.parametrize(
    ("request_line", "allowed"),
    [
        ("PUT /v1/items", ("GET", "POST", "SEARCH")),
        ("put /v1/items/1", ("DELETE", "GET", "PATCH")),
        ("OPTIONS /v1/items/1", ("DELETE", "GET", "PATCH")),
    ],
    ids=["collection", "lowercase-method", "options"],
)
def test_method_not_allowed(request_line: str, allowed: tuple[str, ...]) -> None:
    method, path = request_line.split(" ", 1)
    with pytest.raises(MethodNotAllowed) as caught:
        make_router(CRUD_ROUTES).match(method, path)
    assert (caught.value.method, caught.value.path, caught.value.allowed) == (
        method.upper(),
        path,
        allowed,
    )
    assert isinstance(caught.value, LookupError)


@pytest.mark.parametrize(
    ("request_line", "outcome"),
    [
        ("GET /v1/quotas/summary", "GET /v1/quotas/summary"),
        ("DELETE /v1/quotas/summary", ("GET",)),
        ("OPTIONS /v1/quotas/summary", ("GET",)),
        ("DELETE /v1/quotas/q1", "DELETE /v1/quotas/{id}"),
        ("OPTIONS /v1/quotas/q1", ("DELETE", "GET", "PUT")),
    ],
    ids=["literal", "literal-other-method", "literal-options", "variable", "variable-options"],
)
def test_a_literal_path_is_its_own_resource(
    request_line: str, outcome: str | tuple[str, ...]
) -> None:
    """OpenAPI 3.1 §4.8.8: concrete paths before templated ones, across methods, so
    the Allow of `/quotas/summary` lists what that path serves, not `/quotas/{id}`."""
    router = make_router(
        [
            "GET /v1/quotas/summary",
            "GET /v1/quotas/{id}",
            "PUT /v1/quotas/{id}",
            "DELETE /v1/quotas/{id}",
        ]
    )
    if isinstance(outcome, str):
        assert route(router, request_line)[0] == outcome
        return
    method, path = request_line.split(" ", 1)
    with pytest.raises(MethodNotAllowed) as caught:
        router.match(method, path)
    assert caught.value.allowed == outcome


def test_method_not_allowed_message() -> None:
    with pytest.raises(MethodNotAllowed) as caught:
        make_router(CRUD_ROUTES).match("PUT", "/v1/items")
    assert str(caught.value) == "PUT not allowed for '/v1/items'; allowed: GET, POST, SEARCH"


@pytest.mark.parametrize(
    "path",
    ["/v1/items/", "/v1/items/1/x", "/v1//items", "//v1/items", "v1/items", "", "/", "/v1", "*"],
    ids=[
        "trailing-slash",
        "too-long",
        "empty-inner",
        "empty-first",
        "relative",
        "empty",
        "root",
        "prefix",
        "asterisk",
    ],
)
def test_no_route(path: str) -> None:
    with pytest.raises(NoRoute) as caught:
        make_router(CRUD_ROUTES).match("GET", path)
    assert (caught.value.method, caught.value.path) == ("GET", path)
    assert str(caught.value) == f"no route for GET {path!r}"


def test_no_route_on_empty_router() -> None:
    with pytest.raises(NoRoute):
        Router[str]().match("GET", "/v1/items")


def test_custom_method() -> None:
    router = make_router(CRUD_ROUTES)
    assert route(router, "search /v1/items") == ("SEARCH /v1/items", {})


def test_root_matches_only_deep_wildcard() -> None:
    router = make_router(["GET /{rest=**}"])
    assert route(router, "GET /") == ("GET /{rest=**}", {"rest": ""})
    assert route(router, "GET /a/b") == ("GET /{rest=**}", {"rest": "a/b"})


def test_root_template_matches_the_root_only() -> None:
    """Issue 8 item 6: the template `/` is served (Envoy, grpc-gateway)."""
    router = make_router(["GET /", "GET /{rest=**}", "POST /v1/items"])
    assert route(router, "GET /") == ("GET /", {})
    assert route(router, "GET /a") == ("GET /{rest=**}", {"rest": "a"})
    with pytest.raises(MethodNotAllowed) as caught:
        router.match("POST", "/")
    assert caught.value.allowed == ("GET",)
    with pytest.raises(NoRoute):
        make_router(["GET /"]).match("GET", "/a")
    with pytest.raises(NoRoute):
        make_router(["GET /"]).match("GET", "//")


@pytest.mark.parametrize(
    ("specs", "path", "target", "captures"),
    [
        (["GET /**"], "/a/", "GET /**", {}),
        (["GET /{rest=**}"], "/a/", "GET /{rest=**}", {"rest": "a/"}),
        (["GET /{rest=**}"], "/a/b/", "GET /{rest=**}", {"rest": "a/b/"}),
        (["GET /files/{path=**}"], "/files/", "GET /files/{path=**}", {"path": ""}),
        (["GET /files/{path=**}"], "/files/a%2Fb/", "GET /files/{path=**}", {"path": "a%2Fb/"}),
        (["GET /v1/echo", "GET /v1/{rest=**}"], "/v1/echo/", "GET /v1/{rest=**}",
         {"rest": "echo/"}),
    ],
)  # fmt: skip
def test_a_deep_wildcard_ending_the_template_takes_a_trailing_slash(
    specs: list[str], path: str, target: str, captures: dict[str, str]
) -> None:
    """Issue 8 item 6: `/**` matches `/a/` (grpc-gateway keeps the slash in the capture)."""
    assert route(make_router(specs), f"GET {path}") == (target, captures)


@pytest.mark.parametrize(
    ("specs", "path"),
    [
        (["GET /v1/echo"], "/v1/echo/"),  # only `**` takes it; Envoy strips it everywhere
        (["GET /v1/{id}"], "/v1/x/"),
        (["GET /v1/{id}"], "/v1/"),
        (["GET /v1/**/meta"], "/v1/a/meta/"),  # `**` does not end the template
        (["GET /{rest=**}"], "/a//b"),  # inner empty segments match nothing
        (["GET /{rest=**}"], "/a//"),
        (["POST /v1/{name=*}:do"], "/v1/x:do/"),
    ],
)
def test_other_trailing_slashes_match_nothing(specs: list[str], path: str) -> None:
    method = specs[0].split(" ", 1)[0]
    with pytest.raises(NoRoute):
        make_router(specs).match(method, path)


@pytest.mark.parametrize(
    ("first", "second", "probe"),
    [
        ("GET /v1/{id}", "GET /v1/{name}", "GET /v1/x"),
        ("GET /v1/{id}", "get /v1/*", "GET /v1/x"),
        ("GET /v1/{name=a/*}", "GET /v1/a/{id}", "GET /v1/a/x"),
        ("GET /v1/{p=**}/meta", "GET /v1/**/meta", "GET /v1/x/meta"),
        ("GET /v1/%61", "GET /v1/a", "GET /v1/a"),
        ("POST /v1/{id}:do", "POST /v1/*:%64o", "POST /v1/x:do"),
    ],
    ids=[
        "variable-names",
        "method-case",
        "variable-vs-literal-split",
        "deep",
        "decoded-literal",
        "decoded-verb",
    ],
)
def test_conflict(first: str, second: str, probe: str) -> None:
    router = make_router([first])
    first_method, first_source = first.split(" ", 1)
    method, source = second.split(" ", 1)
    with pytest.raises(RouteConflictError) as caught:
        router.add(method, parse_template(source), second)
    assert str(caught.value) == (
        f"{method.upper()} {source!r} conflicts with {first_method} {first_source!r}, "
        "registered before"
    )
    assert (caught.value.method, caught.value.template.source, caught.value.existing.source) == (
        method.upper(),
        source,
        first_source,
    )
    assert len(router) == 1
    assert route(router, probe)[0] == first


@pytest.mark.parametrize(
    "specs",
    [
        ["GET /v1/{id}", "POST /v1/{id}"],
        ["GET /v1/{id}", "GET /v1/{id}:do"],
        ["GET /v1/{id}:a", "GET /v1/{id}:b"],
        ["GET /v1/*", "GET /v1/**"],
        ["GET /v1/a", "GET /v1/{id=a}/b"],
    ],
    ids=["other-method", "verb-vs-none", "other-verb", "star-vs-deep", "prefix"],
)
def test_no_conflict(specs: list[str]) -> None:
    assert len(make_router(specs)) == len(specs)


@pytest.mark.parametrize("method", ["", "GE T", "GET\n", "GÉT", "GET/"])
def test_add_rejects_invalid_method(method: str) -> None:
    with pytest.raises(ValueError, match="invalid HTTP method"):
        Router[str]().add(method, parse_template("/v1"), "x")


def test_len_counts_routes() -> None:
    router = make_router(CRUD_ROUTES)
    assert len(router) == 6
    assert len(Router[str]()) == 0


def test_route_match_is_frozen_and_slotted() -> None:
    match = make_router(["GET /v1/{id}"]).match("GET", "/v1/7")
    assert match == RouteMatch("GET /v1/{id}", parse_template("/v1/{id}"), {("id",): "7"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        match.target = "other"  # type: ignore[misc]
    assert not hasattr(match, "__dict__")


# Property test: a path rendered from a random template (encoding values as http.proto
# tells clients to) matches that template and gives back exactly the values put in.

LITERALS = st.text(alphabet="abcxyz019-._~", min_size=1, max_size=6)
VALUES = st.text(st.characters(codec="utf-8"), min_size=1, max_size=8)


def encode(value: str) -> str:
    """http.proto: everything but [-_.~0-9a-zA-Z] is percent-encoded."""
    return quote(value, safe="-_.~")


def reserved(value: str) -> str:
    """What a multi-segment capture gives back: decoded, but '/' stays %2F."""
    return value.replace("/", "%2F")


@st.composite
def rendered(draw: st.DrawFn) -> tuple[str, str, dict[tuple[str, ...], str]]:
    template: list[str] = []
    path: list[str] = []
    captures: dict[tuple[str, ...], str] = {}
    kinds = draw(st.lists(st.sampled_from(["lit", "*", "{x}", "{x=items/*}"]), min_size=1))
    if draw(st.booleans()):  # at most one `**`, then only literals
        kinds.append(draw(st.sampled_from(["**", "{x=**}"])))
        kinds += ["lit"] * draw(st.integers(0, 2))
    for index, kind in enumerate(kinds):
        name = f"f{index}"
        if kind == "lit":
            literal = draw(LITERALS)
            template.append(literal)
            path.append(literal)
        elif kind in ("**", "{x=**}"):
            values = draw(st.lists(VALUES, max_size=3))
            template.append(kind.replace("x", name))
            path.extend(encode(value) for value in values)
            if kind != "**":
                captures[(name,)] = "/".join(reserved(value) for value in values)
        else:
            value = draw(VALUES)
            template.append(kind.replace("x", name))
            prefix = "items/" if "items" in kind else ""
            path.append(prefix + encode(value))
            if kind == "{x}":
                captures[(name,)] = value
            elif kind != "*":
                captures[(name,)] = prefix + reserved(value)
    verb = draw(st.one_of(st.none(), LITERALS))
    suffix = "" if verb is None else f":{verb}"
    return "/" + "/".join(template) + suffix, "/" + "/".join(path) + suffix, captures


@settings(max_examples=300, deadline=None, database=None)
@given(rendered())
def test_rendered_path_round_trips(case: tuple[str, str, dict[tuple[str, ...], str]]) -> None:
    source, path, captures = case
    router: Router[str] = Router()
    router.add("GET", parse_template(source), source)
    match = router.match("GET", path)
    assert (match.target, match.captures) == (source, captures)
    with pytest.raises(MethodNotAllowed) as caught:
        router.match("POST", path)
    assert caught.value.allowed == ("GET",)

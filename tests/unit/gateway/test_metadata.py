"""gateway.metadata: the header allow-list and the forwarded-request metadata rule."""

from __future__ import annotations

from typing import Any

import pytest
from google.rpc import code_pb2, error_details_pb2

from gateway.errors import GatewayError
from gateway.metadata import HeaderRules, forwarded_metadata

FORGED = [
    ("x-forwarded-method", "DELETE"),
    ("x-forwarded-uri", "/admin"),
    ("x-forwarded-proto", "https"),
    ("x-forwarded-host", "evil.example"),
    ("x-forwarded-for", "10.6.6.6"),
    ("x-forwarded-prefix", "/evil"),
    ("forwarded", "for=10.6.6.6;proto=https"),
    ("grpc-metadata-x-forwarded-uri", "/admin"),
    ("grpc-metadata-x-forwarded-host", "evil.example"),
    ("grpc-metadata-forwarded", "host=evil.example"),
]


def scope(
    method: str = "GET",
    raw_path: bytes | None = b"/v1/things/a%2Fb",
    *,
    headers: list[tuple[str, str]] | None = None,
    scheme: str = "http",
    client: tuple[str, int] | None = ("192.0.2.7", 51000),
    server: tuple[str, int | None] | None = ("10.0.0.1", 8080),
    path: str = "/v1/things/a/b",
) -> dict[str, Any]:
    raw_headers = [
        (name.encode("latin-1"), value.encode("latin-1"))
        for name, value in (headers if headers is not None else [("host", "api.example:8443")])
    ]
    return {
        "type": "http",
        "method": method,
        "scheme": scheme,
        "path": path,
        "raw_path": raw_path,
        "query_string": b"",
        "headers": raw_headers,
        "client": client,
        "server": server,
    }


def bad_header(exc: pytest.ExceptionInfo[GatewayError]) -> tuple[int, str, str]:
    """(code, message, the one BadRequest field) of a gateway-made 400."""
    status = exc.value.status
    request = error_details_pb2.BadRequest()
    fields = [
        v.field for d in status.details if d.Unpack(request) for v in request.field_violations
    ]
    assert len(fields) == 1
    return status.code, status.message, fields[0]


# --- allow-list -------------------------------------------------------------------------


# An API whose server reads headers of its own, as a product configures the gateway.
ACME = HeaderRules(forward_prefixes=("x-acme-", "grpc-metadata-"))


def test_allow_list_forwards_named_prefixed_and_grpc_metadata_headers() -> None:
    headers = [
        ("authorization", "Bearer t"),
        ("x-acme-tenant", "acme"),
        ("grpc-metadata-color", "blue"),
        ("cookie", "s=1"),
        ("connection", "close"),
        ("grpc-metadata-connection", "close"),
        ("grpc-metadata-grpc-timeout", "1S"),
        ("x-random", "nope"),
    ]
    assert ACME.outgoing_metadata(headers) == [
        ("authorization", "Bearer t"),
        ("x-acme-tenant", "acme"),
        ("color", "blue"),
    ]


def test_default_rules_forward_standard_headers_and_grpc_metadata_only() -> None:
    headers = [
        ("authorization", "Bearer t"),
        ("dpop", "proof"),
        ("traceparent", "00-1-2-01"),
        ("x-acme-tenant", "acme"),
        ("x-stella-tenant", "acme"),
        ("grpc-metadata-color", "blue"),
    ]
    assert HeaderRules().outgoing_metadata(headers) == [
        ("authorization", "Bearer t"),
        ("dpop", "proof"),
        ("traceparent", "00-1-2-01"),
        ("color", "blue"),
    ]
    assert HeaderRules().response_headers([("x-acme-trace-id", "t1"), ("link", "<x>")]) == [
        ("Grpc-Metadata-X-Acme-Trace-Id", "t1"),
        ("Link", "<x>"),
    ]


def test_client_forwarding_headers_never_pass_even_when_allow_listed() -> None:
    rules = HeaderRules(
        forward=frozenset({"x-forwarded-for", "forwarded"}), forward_prefixes=("x-",)
    )
    assert rules.outgoing_metadata([*FORGED, ("x-kept", "1")]) == [("x-kept", "1")]
    assert HeaderRules().outgoing_metadata(FORGED) == []


def test_a_name_grpc_cannot_carry_is_dropped() -> None:
    headers = [("x-acme-a!b", "1"), ("grpc-metadata-a#b", "2"), ("x-acme-ok_1.x", "3")]
    assert ACME.outgoing_metadata(headers) == [("x-acme-ok_1.x", "3")]


@pytest.mark.parametrize(
    ("value", "carried"),
    [
        ("Bearer abc", "Bearer abc"),
        ("Bearer \xe9t\xe9", "Bearer %E9t%E9"),
        ("a\tb 100%", "a%09b 100%25"),
        ("a\x00b\x7f", "a%00b%7F"),
        ("\u20ac", "%E2%82%AC"),  # not from ASGI (latin-1 only), but still carried
    ],
)
def test_a_value_grpc_cannot_carry_travels_percent_encoded(value: str, carried: str) -> None:
    assert HeaderRules().outgoing_metadata([("authorization", value)]) == [
        ("authorization", carried)
    ]


def test_a_value_not_forwarded_is_dropped_as_it_is() -> None:
    assert HeaderRules().outgoing_metadata([("cookie", "caf\xe9")]) == []


# --- forwarded request ------------------------------------------------------------------


def test_gateway_sets_every_forwarded_key_itself() -> None:
    forged = [("host", "api.example:8443"), *FORGED]
    assert forwarded_metadata(scope("get", headers=forged)) == [
        ("x-forwarded-method", "GET"),
        ("x-forwarded-uri", "/v1/things/a%2Fb"),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-host", "api.example:8443"),
        ("x-forwarded-for", "192.0.2.7"),
    ]


def test_forwarded_uri_keeps_escapes_and_drops_the_query() -> None:
    raw = b"/v1/a%20b/%E2%82%AC:run?x=%2F&y"
    assert dict(forwarded_metadata(scope(raw_path=raw)))["x-forwarded-uri"] == (
        "/v1/a%20b/%E2%82%AC:run"
    )


def test_forwarded_uri_escapes_bytes_grpc_cannot_carry() -> None:
    raw = "/v1/caf\xe9/a b".encode("latin-1")
    assert dict(forwarded_metadata(scope(raw_path=raw)))["x-forwarded-uri"] == "/v1/caf%E9/a%20b"


def test_forwarded_uri_without_raw_path_is_the_encoded_path() -> None:
    found = dict(forwarded_metadata(scope(raw_path=None, path="/v1/\u20ac x")))
    assert found["x-forwarded-uri"] == "/v1/%E2%82%AC%20x"


def test_forwarded_proto_is_the_connection_scheme() -> None:
    assert dict(forwarded_metadata(scope(scheme="https")))["x-forwarded-proto"] == "https"


@pytest.mark.parametrize(
    ("server", "host"),
    [(("10.0.0.1", 8080), "10.0.0.1:8080"), (("::1", 80), "[::1]:80"), (None, "")],
)
def test_forwarded_host_without_a_host_header_is_the_server_address(
    server: tuple[str, int] | None, host: str
) -> None:
    assert dict(forwarded_metadata(scope(headers=[], server=server)))["x-forwarded-host"] == host


def test_forwarded_for_without_a_peer_is_unknown() -> None:
    assert dict(forwarded_metadata(scope(client=None)))["x-forwarded-for"] == "unknown"


@pytest.mark.parametrize("host", ["[::1]:8080", "api.example", "127.0.0.1:1", "h%41st"])
def test_valid_host_headers(host: str) -> None:
    assert dict(forwarded_metadata(scope(headers=[("host", host)])))["x-forwarded-host"] == host


@pytest.mark.parametrize("host", ["evil.example/path", "a@b", "caf\xe9", "a b", "h:x"])
def test_a_malformed_host_is_400(host: str) -> None:
    with pytest.raises(GatewayError) as exc:
        forwarded_metadata(scope(headers=[("host", host)]))
    assert bad_header(exc) == (
        code_pb2.INVALID_ARGUMENT,
        "malformed Host header: is not a host[:port]",
        "Host",
    )


def test_trusted_forwarded_for_is_carried_percent_encoded() -> None:
    headers = [("host", "h"), ("x-forwarded-for", "10.0.0.1, caf\xe9")]
    found = dict(forwarded_metadata(scope(headers=headers), trust=True))
    assert found["x-forwarded-for"] == "10.0.0.1, caf%E9, 192.0.2.7"


def test_trusted_proxy_values_are_kept_first_value_and_for_extended() -> None:
    headers = [
        ("host", "internal:8080"),
        ("x-forwarded-proto", "HTTPS, http"),
        ("x-forwarded-host", "api.example, internal"),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-for", "203.0.113.9, 198.51.100.2"),
        ("x-forwarded-for", "198.51.100.3"),
        ("x-forwarded-method", "DELETE"),
        ("x-forwarded-uri", "/admin"),
        ("grpc-metadata-x-forwarded-host", "evil.example"),
    ]
    assert forwarded_metadata(scope("POST", b"/oauth/token?a=1", headers=headers), trust=True) == [
        ("x-forwarded-method", "POST"),
        ("x-forwarded-uri", "/oauth/token"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "api.example"),
        ("x-forwarded-for", "203.0.113.9, 198.51.100.2, 198.51.100.3, 192.0.2.7"),
    ]


def test_trusted_without_forwarded_headers_is_the_gateways_own() -> None:
    assert forwarded_metadata(scope(scheme="https"), trust=True) == [
        ("x-forwarded-method", "GET"),
        ("x-forwarded-uri", "/v1/things/a%2Fb"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "api.example:8443"),
        ("x-forwarded-for", "192.0.2.7"),
    ]


def test_untrusted_ignores_forwarded_headers_entirely() -> None:
    headers = [
        ("host", "internal:8080"),
        ("x-forwarded-proto", "gopher"),
        ("x-forwarded-host", "not a host"),
        ("x-forwarded-for", "\xe9"),
    ]
    assert forwarded_metadata(scope(headers=headers)) == [
        ("x-forwarded-method", "GET"),
        ("x-forwarded-uri", "/v1/things/a%2Fb"),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-host", "internal:8080"),
        ("x-forwarded-for", "192.0.2.7"),
    ]


@pytest.mark.parametrize(
    ("header", "value", "message"),
    [
        (
            "x-forwarded-host",
            "evil.example/x",
            "malformed X-Forwarded-Host header: is not a host[:port]",
        ),
        ("x-forwarded-proto", "1http", "malformed X-Forwarded-Proto header: is not a URI scheme"),
    ],
)
def test_trusted_malformed_forwarded_headers_are_400(header: str, value: str, message: str) -> None:
    with pytest.raises(GatewayError) as exc:
        forwarded_metadata(scope(headers=[("host", "h"), (header, value)]), trust=True)
    code, text, field = bad_header(exc)
    assert (code, text) == (code_pb2.INVALID_ARGUMENT, message)
    assert field == message.split(" ")[1]


# --- one pass over the request headers --------------------------------------------------


def test_read_is_the_allow_list_then_the_forwarded_keys_and_the_headers_read_here() -> None:
    headers = [
        ("host", "api.example"),
        ("authorization", "Bearer t"),
        ("content-type", "application/json"),
        ("x-forwarded-host", "evil.example"),
        ("grpc-metadata-color", "blue"),
        ("grpc-timeout", "5S"),
        ("content-type", "application/json"),  # the same value again: harmless
        ("accept", "text/event-stream"),
        ("accept", "application/json"),  # a list header: the first is read
        ("cookie", "s=1"),
    ]
    request = scope("PATCH", b"/v1/x?y=1", headers=headers)
    head = HeaderRules().read(request)
    assert head.metadata == [
        *HeaderRules().outgoing_metadata(headers),
        *forwarded_metadata(request),
    ]
    assert head.metadata[:2] == [("authorization", "Bearer t"), ("color", "blue")]
    assert head.fields == {
        "content-type": "application/json",
        "grpc-timeout": "5S",
        "accept": "text/event-stream",
    }
    assert head.get("if-none-match") is None
    twice = scope("POST", b"/v1/x", headers=[*headers, ("content-type", "text/plain")])
    with pytest.raises(GatewayError) as refused:
        HeaderRules().read(twice)
    assert refused.value.status.message == (
        "malformed Content-Type header: sent twice with different values"
    )


def test_read_trusted_matches_forwarded_metadata_trusted() -> None:
    headers = [("host", "h"), ("x-forwarded-proto", "https"), ("x-forwarded-for", "10.0.0.9")]
    request = scope(headers=headers)
    assert HeaderRules().read(request, trust=True).metadata == forwarded_metadata(
        request, trust=True
    )


def test_read_remembers_a_bounded_number_of_header_names() -> None:
    rules = HeaderRules(forward_prefixes=ACME.forward_prefixes)
    many = [(f"x-junk-{i}", "1") for i in range(3000)]
    head = rules.read(scope(headers=[("host", "h"), ("x-acme-tenant", "t"), *many]))
    assert head.metadata[0] == ("x-acme-tenant", "t")
    assert 0 < len(rules._plans) <= 1024

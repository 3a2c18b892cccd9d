"""Query-parameter conformance: raw query string -> gwtest.v1.Kitchen, or an error.

Each case is parsed as the gateway parses a request (urllib.parse.parse_qsl with
keep_blank_values=True) and applied with gateway.query.apply_query. Expected
results follow grpc-gateway's query parameter parsing (runtime/query.go) and the
query-parameter rules in google/api/http.proto. A success is compared with
MessageToDict(preserving_proto_field_name=True), so 64-bit integers are strings and
well-known types take their JSON forms. A failure names a fragment of the
FieldError message.

Case ids start with `query/`. expected_failures.txt is shared with the other
conformance tables (test_templates.py uses `grammar/` and `match/`): each line is
`case_id  # reason`, and the `query/` ones listed there are known gaps, run as
xfail(strict=True), so a case that starts passing fails the run until its line is
removed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qsl

import pytest
from google.protobuf.json_format import MessageToDict

from gateway.field_paths import FieldError
from gateway.query import apply_query
from tests.support import protos

EXPECTED_FAILURES = Path(__file__).with_name("expected_failures.txt")
PREFIX = "query/"


class Case(NamedTuple):
    id: str
    query: str
    want: dict[str, Any] | None = None  # the message as MessageToDict prints it
    error: str | None = None  # a fragment of str(FieldError)
    bound: tuple[tuple[str, ...], ...] = ()  # proto-name paths set from the path or body
    allow_unknown: bool = False


CASES = [
    # Scalars: decimal integers, 64-bit ones printed as JSON strings.
    Case("query/string", "name=hello%20world", {"name": "hello world"}),
    Case("query/string-plus-is-space", "name=a+b", {"name": "a b"}),
    Case("query/int32", "i32=-42", {"i32": -42}),
    Case("query/int64-max", "i64=9223372036854775807", {"i64": "9223372036854775807"}),
    Case("query/uint32-max", "u32=4294967295", {"u32": 4294967295}),
    Case("query/uint64-max", "u64=18446744073709551615", {"u64": "18446744073709551615"}),
    Case("query/sint32", "s32=-7", {"s32": -7}),
    Case("query/fixed64", "f64=42", {"f64": "42"}),
    Case("query/float", "flt=1.5", {"flt": 1.5}),
    Case("query/double-exponent", "dbl=-2.5e-3", {"dbl": -0.0025}),
    Case("query/double-nan", "dbl=NaN", {"dbl": "NaN"}),
    Case("query/double-minus-infinity", "dbl=-Infinity", {"dbl": "-Infinity"}),
    Case("query/bool-true", "flag=true", {"flag": True}),
    Case("query/bool-one", "flag=1", {"flag": True}),
    Case("query/bool-upper-case", "flag=TRUE", {"flag": True}),
    Case("query/bool-parsebool-letter", "flag=T", {"flag": True}),
    Case("query/bytes-standard", "data=aGVsbG8%3D", {"data": "aGVsbG8="}),
    Case("query/bytes-url-safe-unpadded", "data=-_8", {"data": "+/8="}),
    Case("query/enum-name", "color=COLOR_GREEN", {"color": "COLOR_GREEN"}),
    Case("query/enum-number", "color=1", {"color": "COLOR_RED"}),
    # Repeated fields repeat the parameter; commas are data.
    Case("query/repeated-string", "tags=a&tags=b", {"tags": ["a", "b"]}),
    Case("query/repeated-no-comma-split", "tags=a,b", {"tags": ["a,b"]}),
    Case("query/repeated-interleaved", "tags=a&name=n&tags=b", {"tags": ["a", "b"], "name": "n"}),
    Case("query/repeated-int32", "numbers=1&numbers=-2", {"numbers": [1, -2]}),
    Case(
        "query/repeated-enum-mixed",
        "colors=COLOR_RED&colors=2",
        {"colors": ["COLOR_RED", "COLOR_GREEN"]},
    ),
    # Maps: name[key]=value.
    Case(
        "query/map", "labels[env]=prod&labels[tier]=web", {"labels": {"env": "prod", "tier": "web"}}
    ),
    Case("query/map-int-value", "counters[a]=3", {"counters": {"a": 3}}),
    Case("query/map-key-with-dot", "labels[a.b]=c", {"labels": {"a.b": "c"}}),
    Case("query/map-key-encoded-brackets", "labels%5Bk%5D=v", {"labels": {"k": "v"}}),
    # Field paths: proto names or json_name, nested through singular messages.
    Case("query/nested", "inner.label=x&inner.count=2", {"inner": {"label": "x", "count": 2}}),
    Case("query/nested-deep", "inner.child.label=y", {"inner": {"child": {"label": "y"}}}),
    Case("query/json-name-custom", "customName=z", {"custom_json": "z"}),
    Case("query/proto-name-custom", "custom_json=z", {"custom_json": "z"}),
    Case("query/json-name-wrapper", "maybeName=hi", {"maybe_name": "hi"}),
    Case("query/json-name-oneof", "choiceB=3", {"choice_b": 3}),
    Case("query/proto3-optional", "opt_text=x", {"opt_text": "x"}),
    # Well-known types take their JSON string forms.
    Case("query/timestamp-utc", "at=2026-11-22T10:00:00Z", {"at": "2026-11-22T10:00:00Z"}),
    Case(
        "query/timestamp-offset-fraction",
        "at=2026-11-22T11:00:00.5%2B01:00",
        {"at": "2026-11-22T10:00:00.500Z"},
    ),
    Case("query/duration", "ttl=1.5s", {"ttl": "1.500s"}),
    Case("query/duration-negative", "ttl=-3s", {"ttl": "-3s"}),
    Case("query/duration-micro", "ttl=0.000001s", {"ttl": "0.000001s"}),
    Case(
        "query/field-mask-camel",
        "update_mask=displayName,inner.label",
        {"update_mask": "displayName,inner.label"},
    ),
    Case(
        "query/field-mask-snake",
        "update_mask=display_name,labels",
        {"update_mask": "displayName,labels"},
    ),
    Case("query/wrapper-int64", "maybe_count=12", {"maybe_count": "12"}),
    Case("query/wrapper-bool-false-is-set", "maybe_flag=false", {"maybe_flag": False}),
    Case("query/wrapper-double", "maybe_double=2.5", {"maybe_double": 2.5}),
    Case("query/wrapper-bytes", "maybe_bytes=aGk", {"maybe_bytes": "aGk="}),
    Case("query/struct", "attrs=%7B%22a%22%3A1%7D", {"attrs": {"a": 1}}),
    Case("query/value-number", "any_value=42", {"any_value": 42}),
    Case("query/value-plain-string", "any_value=hello", {"any_value": "hello"}),
    Case("query/value-json-string", "any_value=%2242%22", {"any_value": "42"}),
    Case("query/list-value-json", "list_value=%5B1%2C%22a%22%5D", {"list_value": [1, "a"]}),
    Case("query/list-value-repeated", "list_value=a&list_value=2", {"list_value": ["a", 2]}),
    # Blank values, bound paths, unknown names.
    Case("query/blank-dropped", "i32=&name=x", {"name": "x"}),
    Case("query/blank-in-repeated-kept", "tags=&tags=a", {"tags": ["", "a"]}),
    Case("query/bound-ignored", "id=x&name=y", {"name": "y"}, bound=(("id",),)),
    Case("query/bound-subtree", "inner.label=x&inner.bogus=1", {}, bound=(("inner",),)),
    Case("query/bound-json-alias", "customName=x", {}, bound=(("custom_json",),)),
    Case(
        "query/bound-sibling-applies",
        "inner.count=3",
        {"inner": {"count": 3}},
        bound=(("inner", "label"),),
    ),
    Case("query/unknown-allowed", "bogus=1&name=y", {"name": "y"}, allow_unknown=True),
    # Errors name the parameter as written.
    Case(
        "query/err-unknown",
        "bogus=1",
        error='invalid parameter "bogus": unknown field',
    ),
    Case("query/err-unknown-nested", "inner.bogus=1", error="unknown field"),
    Case("query/err-unknown-parent", "bogus.name=1", error='unknown field "bogus"'),
    Case("query/err-camel-case-is-not-json-name", "customJson=1", error="unknown field"),
    Case("query/err-unknown-blank-value", "bogus=", error="unknown field"),
    Case(
        "query/err-int32-overflow",
        "i32=2147483648",
        error='invalid parameter "i32": "2147483648" is not a decimal int32; out of range',
    ),
    Case(
        "query/err-uint64-overflow",
        "u64=18446744073709551616",
        error="is not a decimal uint64; out of range",
    ),
    Case("query/err-uint-negative", "u32=-1", error="is not a decimal uint32; out of range"),
    Case("query/err-int-hex", "i32=0x10", error='"0x10" is not a decimal int32'),
    Case(
        "query/err-float-overflow",
        "flt=1e39",
        error="is not a float (decimal, NaN, Infinity or -Infinity); out of range",
    ),
    Case("query/err-bool", "flag=yes", error='"yes" is not a bool (true, false, 1 or 0)'),
    Case("query/err-bytes", "data=%21%21", error='"!!" is not base64 bytes'),
    Case(
        "query/err-enum-name",
        "color=COLOR_BLUE",
        error="expected one of COLOR_UNSPECIFIED, COLOR_RED, COLOR_GREEN",
    ),
    Case("query/err-enum-number", "color=9", error='"9" is not a Color name or number'),
    Case(
        "query/err-singular-twice",
        "name=a&name=b",
        error='invalid parameter "name": given more than once',
    ),
    Case("query/err-proto-and-json-name", "opt_text=a&optText=b", error="given more than once"),
    Case(
        "query/err-oneof",
        "choice_a=x&choice_b=1",
        error='invalid parameter "choice_b": "choice_a" of oneof "choice" is already set',
    ),
    Case(
        "query/err-message-field",
        "inner=x",
        error="Inner is an object, not a single value",
    ),
    Case(
        "query/err-repeated-message",
        "inners.label=x",
        error='cannot set sub-fields of "inners" (array of Inner)',
    ),
    Case(
        "query/err-scalar-parent", "name.first=x", error='cannot set sub-fields of "name" (string)'
    ),
    Case(
        "query/err-wkt-parent",
        "at.seconds=1",
        error='cannot set sub-fields of "at" (timestamp)',
    ),
    Case("query/err-map-without-key", "labels=x", error="a map takes entries as labels[key]=value"),
    Case("query/err-index-on-list", "tags[0]=x", error='"tags" (array of string) is not a map'),
    Case(
        "query/err-map-key-twice",
        "labels[a]=1&labels[a]=2",
        error='invalid parameter "labels[a]": given more than once',
    ),
    Case("query/err-map-value", "counters[a]=x", error='"x" is not a decimal int32'),
    Case("query/err-timestamp-date-only", "at=2026-11-22", error="is not an RFC 3339 timestamp"),
    Case(
        "query/err-timestamp-february-30",
        "at=2026-02-30T00:00:00Z",
        error="day is out of range for month",
    ),
    Case(
        "query/err-duration-go-syntax",
        "ttl=1h30m",
        error='"1h30m" is not a duration in seconds such as 1.5s',
    ),
    Case("query/err-struct-array", "attrs=%5B1%5D", error='"[1]" is not a JSON object'),
    Case(
        "query/err-wrapper",
        "maybe_count=ten",
        error='"ten" is not a decimal int64',
    ),
    Case(
        "query/err-allow-unknown-keeps-type-errors",
        "name.x=1",
        error="cannot set sub-fields",
        allow_unknown=True,
    ),
]


def expected_failures(path: Path = EXPECTED_FAILURES) -> dict[str, str]:
    """This table's listed ids mapped to their reasons; {} without the file.

    The format rules are test_templates.py's: blank and `#` lines are skipped, and
    every other line must be `case_id  # reason`.
    """
    if not path.exists():
        return {}
    failures: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        case_id, _, reason = (part.strip() for part in text.partition("#"))
        if not case_id or " " in case_id or not reason:
            raise ValueError(f"{path.name}:{number}: expected 'case_id  # reason', got {line!r}")
        if case_id.startswith(PREFIX):
            failures[case_id] = reason
    return failures


def _params() -> list[Any]:
    failures = expected_failures()
    return [
        pytest.param(
            case,
            id=case.id,
            marks=[pytest.mark.xfail(strict=True, reason=failures[case.id])]
            if case.id in failures
            else [],
        )
        for case in CASES
    ]


def test_cases_are_well_formed() -> None:
    ids = [case.id for case in CASES]
    assert sorted(case_id for case_id in set(ids) if ids.count(case_id) > 1) == []
    assert [case.id for case in CASES if not case.id.startswith(PREFIX)] == []
    assert [case.id for case in CASES if (case.want is None) == (case.error is None)] == []


def test_expected_failures_name_existing_cases() -> None:
    assert sorted(set(expected_failures()) - {case.id for case in CASES}) == []


@pytest.mark.parametrize("case", _params())
def test_query(case: Case) -> None:
    message = protos.echo_pb2().Kitchen()
    params = parse_qsl(case.query, keep_blank_values=True)
    options: dict[str, Any] = {"bound": case.bound, "allow_unknown": case.allow_unknown}
    if case.error is not None:
        with pytest.raises(FieldError) as info:
            apply_query(message, params, **options)
        assert case.error in str(info.value)
    else:
        apply_query(message, params, **options)
        assert MessageToDict(message, preserving_proto_field_name=True) == case.want


def test_expected_failures_format(tmp_path: Path) -> None:
    listing = tmp_path / "expected_failures.txt"
    listing.write_text(
        "# known gaps\n\nquery/a  # not yet\n  query/b   #  spaces  \nmatch/c  # theirs\n",
        encoding="utf-8",
    )
    assert expected_failures(listing) == {"query/a": "not yet", "query/b": "spaces"}
    assert expected_failures(tmp_path / "missing.txt") == {}
    listing.write_text("query/a\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"expected_failures.txt:1: expected 'case_id  # reason'"):
        expected_failures(listing)

"""gateway.template: the http.proto path-template grammar."""

from __future__ import annotations

import dataclasses
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.template import (
    DeepWildcard,
    Literal,
    Segment,
    Template,
    TemplateError,
    Variable,
    Wildcard,
    parse_template,
)

STAR, DEEP = Wildcard(), DeepWildcard()


def lit(*values: str) -> tuple[Segment, ...]:
    return tuple(Literal(value) for value in values)


VALID = [
    ("/v1", lit("v1"), (), None),
    ("/v1/messages", lit("v1", "messages"), (), None),
    ("/v1/*", (*lit("v1"), STAR), (), None),
    ("/v1/**", (*lit("v1"), DEEP), (), None),
    ("/**", (DEEP,), (), None),
    ("/v1/{id}", (*lit("v1"), STAR), (Variable(("id",), 1, 2),), None),
    ("/v1/{id=*}", (*lit("v1"), STAR), (Variable(("id",), 1, 2),), None),
    (
        "/v1/{name=messages/*}",
        (*lit("v1", "messages"), STAR),
        (Variable(("name",), 1, 3),),
        None,
    ),
    (
        "/v1/{name=messages/*}:cancel",
        (*lit("v1", "messages"), STAR),
        (Variable(("name",), 1, 3),),
        "cancel",
    ),
    (
        "/v1/users/{id}:undelete",
        (*lit("v1", "users"), STAR),
        (Variable(("id",), 2, 3),),
        "undelete",
    ),
    (
        "/v1/users/{user_id}/messages/{message_id}",
        (*lit("v1", "users"), STAR, Literal("messages"), STAR),
        (Variable(("user_id",), 2, 3), Variable(("message_id",), 4, 5)),
        None,
    ),
    (
        "/v1/messages/{message_id}/{sub.subfield}",
        (*lit("v1", "messages"), STAR, STAR),
        (Variable(("message_id",), 2, 3), Variable(("sub", "subfield"), 3, 4)),
        None,
    ),
    ("/v1/{path=**}", (*lit("v1"), DEEP), (Variable(("path",), 1, 2),), None),
    ("/v1/**/meta", (*lit("v1"), DEEP, Literal("meta")), (), None),
    (
        "/v1/{name=shelves/*/books/**}/meta:get",
        (*lit("v1", "shelves"), STAR, Literal("books"), DEEP, Literal("meta")),
        (Variable(("name",), 1, 5),),
        "get",
    ),
    ("/v1/*:verb", (*lit("v1"), STAR), (), "verb"),
    ("/v1/**:verb", (*lit("v1"), DEEP), (), "verb"),
    ("/v1/a:b/c", lit("v1", "a:b", "c"), (), None),
    ("/v1/a:b", lit("v1", "a"), (), "b"),
    ("/", (), (), None),  # the root, as Envoy and grpc-gateway accept it
    ("/v1/{_x.Y_2}", (*lit("v1"), STAR), (Variable(("_x", "Y_2"), 1, 2),), None),
    ("/v1/a%20b/%2f", lit("v1", "a%20b", "%2f"), (), None),
    ("/v1/~user-1_.x!$&'()+,;=@", lit("v1", "~user-1_.x!$&'()+,;=@"), (), None),
    ("/v1/a*b/***", lit("v1", "a*b", "***"), (), None),
    ("/v1/x:%41", lit("v1", "x"), (), "%41"),
]


@pytest.mark.parametrize(
    ("source", "segments", "variables", "verb"), VALID, ids=[case[0] for case in VALID]
)
def test_parse_valid(
    source: str,
    segments: tuple[Segment, ...],
    variables: tuple[Variable, ...],
    verb: str | None,
) -> None:
    assert parse_template(source) == Template(source, segments, variables, verb)


INVALID = [
    ("", "must start with '/'", 0),
    ("v1/users", "must start with '/'", 0),
    ("/v1/{name=a:b}", "a verb (':') may only end the template, not a variable", 11),
    ("/a/{x=var:verb}", "a verb (':') may only end the template, not a variable", 9),
    ("/a/{x=b/c:verb}/d", "a verb (':') may only end the template, not a variable", 9),
    ("/a/{x=**:verb}", "a verb (':') may only end the template, not a variable", 8),
    ("/a/{x=b:c}:verb", "a verb (':') may only end the template, not a variable", 7),
    ("/:verb", "empty segment", 1),
    ("//", "empty segment", 1),
    ("/v1//users", "empty segment", 4),
    ("/v1/", "empty segment", 4),
    ("/v1/:verb", "empty segment", 4),
    ("/v1/{id", "unclosed '{'", 4),
    ("/v1/{id:x", "unclosed '{'", 4),
    ("/v1/{name=a/*", "unclosed '{'", 4),
    ("/v1/}", "unbalanced '}'", 4),
    ("/v1/{id}}", "unbalanced '}'", 8),
    ("/v1/{a={b}}", "nested variables are not allowed", 7),
    ("/v1/{a=x/{b}}", "nested variables are not allowed", 9),
    ("/v1/{}", "empty field path", 5),
    ("/v1/{=*}", "empty field path", 5),
    ("/v1/{a.}", "empty identifier in field path", 7),
    ("/v1/{.a}", "empty identifier in field path", 5),
    ("/v1/{a..b}", "empty identifier in field path", 7),
    ("/v1/{1a}", "invalid character '1' in field path", 5),
    ("/v1/{a-b}", "invalid character '-' in field path", 6),
    ("/v1/{a b}", "invalid character ' ' in field path", 6),
    ("/v1/{é}", "invalid character 'é' in field path", 5),
    ("/v1/{a}/{a}", "field path 'a' appears twice", 9),
    ("/v1/{a.b}/{a.b=x/*}", "field path 'a.b' appears twice", 11),
    ("/v1/{x=}", "empty segment", 7),
    ("/v1/{id}x", "expected '/' but found 'x'", 8),
    ("/v1/{id}:a:b", "expected '/' but found ':'", 8),
    ("/v1/**/**", "more than one '**'", 7),
    ("/v1/{a=**}/{b=**}", "more than one '**'", 14),
    ("/v1/**/*", "only literal segments may follow '**'", 7),
    ("/v1/**/{id}", "only literal segments may follow '**'", 7),
    ("/v1/{p=**}/x/*", "only literal segments may follow '**'", 13),
    ("/v1/a:", "empty verb", 5),
    ("/v1/{id}:", "empty verb", 8),
    ("/v1/a b", "invalid character ' ' in literal", 5),
    ("/v1/a?b", "invalid character '?' in literal", 5),
    ("/v1/a#b", "invalid character '#' in literal", 5),
    ("/v1/a{id}", "invalid character '{' in literal", 5),
    ("/v1/é", "invalid character 'é' in literal", 4),
    ("/v1/a\tb", "invalid character '\\t' in literal", 5),
    ("/v1/x:do it", "invalid character ' ' in literal", 8),
    ("/v1/a%2", "invalid percent-escape", 5),
    ("/v1/a%zz", "invalid percent-escape", 5),
    ("/v1/%", "invalid percent-escape", 4),
    ("/v1/%FF", "percent-escapes do not decode to UTF-8", 4),
]


@pytest.mark.parametrize(("source", "reason", "position"), INVALID, ids=[c[0] for c in INVALID])
def test_parse_invalid(source: str, reason: str, position: int) -> None:
    with pytest.raises(TemplateError) as caught:
        parse_template(source)
    assert (caught.value.template, caught.value.reason, caught.value.position) == (
        source,
        reason,
        position,
    )


def test_error_message_names_template_reason_and_position() -> None:
    with pytest.raises(TemplateError) as caught:
        parse_template("/v1/{id")
    assert str(caught.value) == "invalid path template '/v1/{id': unclosed '{' (at 4)"
    assert isinstance(caught.value, ValueError)


def test_error_message_without_position() -> None:
    assert str(TemplateError("/x", "too vague")) == "invalid path template '/x': too vague"


def test_error_survives_pickling() -> None:
    error = TemplateError("/v1/{id", "unclosed '{'", 4)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.template, copy.reason, copy.position) == ("/v1/{id", "unclosed '{'", 4)


def test_field_paths_in_template_order() -> None:
    template = parse_template("/v1/{b}/{a.x=items/*}/{c=**}")
    assert template.field_paths() == (("b",), ("a", "x"), ("c",))


def test_nodes_are_frozen_and_slotted() -> None:
    template = parse_template("/v1/{id}")
    with pytest.raises(dataclasses.FrozenInstanceError):
        template.verb = "x"  # type: ignore[misc]
    for node in (template, template.segments[0], template.variables[0], STAR, DEEP):
        assert not hasattr(node, "__dict__")


# Property tests: the parser's only failure mode is TemplateError, and any template
# assembled from grammar pieces parses back to the pieces.

GRAMMAR_CHARS = "/{}*=.:%_-~aZ09 ?#é"


@settings(max_examples=500, deadline=None, database=None)
@given(st.one_of(st.text(), st.text(alphabet=GRAMMAR_CHARS), st.from_regex(r"/[/{}*=.:a%]*")))
def test_parse_raises_only_template_error(text: str) -> None:
    try:
        template = parse_template(text)
    except TemplateError as error:
        assert error.template == text
        assert error.position is None or 0 <= error.position <= len(text)
    else:
        assert template.source == text
        assert template.segments or text == "/"


LITERALS = st.text(alphabet="abcxyz019-._~", min_size=1, max_size=6)
# Variable sub-patterns and their flattened segments.
SUBPATTERNS: dict[str, tuple[Segment, ...]] = {
    "*": (STAR,),
    "items/*": (Literal("items"), STAR),
    "**": (DEEP,),
    "items/**": (Literal("items"), DEEP),
}


@st.composite
def pieces(draw: st.DrawFn) -> tuple[str, Template]:
    """A template source plus the AST it must parse to, built piece by piece."""
    text: list[str] = []
    segments: list[Segment] = []
    variables: list[Variable] = []
    kinds = draw(st.lists(st.sampled_from(["lit", "*", "{x}", "{x=*}", "{x=items/*}"]), min_size=1))
    if draw(st.booleans()):  # at most one `**`, then only literals
        kinds.append(draw(st.sampled_from(["**", "{x=**}", "{x=items/**}"])))
        kinds += ["lit"] * draw(st.integers(0, 2))
    for index, kind in enumerate(kinds):
        if kind == "lit":
            value = draw(LITERALS)
            text.append(value)
            segments.append(Literal(value))
        elif kind in SUBPATTERNS:
            text.append(kind)
            segments.extend(SUBPATTERNS[kind])
        else:
            name = f"f{index}"
            pattern = kind.removeprefix("{x").removeprefix("=").removesuffix("}") or "*"
            text.append(kind.replace("x", name))
            flat = SUBPATTERNS[pattern]
            variables.append(Variable((name,), len(segments), len(segments) + len(flat)))
            segments.extend(flat)
    verb = draw(st.one_of(st.none(), LITERALS))
    source = "/" + "/".join(text) + ("" if verb is None else f":{verb}")
    return source, Template(source, tuple(segments), tuple(variables), verb)


@settings(max_examples=300, deadline=None, database=None)
@given(pieces())
def test_generated_templates_parse_to_their_pieces(case: tuple[str, Template]) -> None:
    source, expected = case
    assert parse_template(source) == expected

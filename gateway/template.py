"""HttpRule path templates: the `google.api.http` grammar parsed into a flat AST.

The grammar, from google/api/http.proto ("Path template syntax")::

    Template  = "/" Segments [ Verb ] | "/" ;
    Segments  = Segment { "/" Segment } ;
    Segment   = "*" | "**" | LITERAL | Variable ;
    Variable  = "{" FieldPath [ "=" Segments ] "}" ;
    FieldPath = IDENT { "." IDENT } ;
    Verb      = ":" LITERAL ;

A variable's sub-pattern is expanded in place, so matching only ever walks one flat
tuple of segments. `/v1/{name=messages/*}:cancel` parses to::

    segments  = (Literal("v1"), Literal("messages"), Wildcard())
    variables = (Variable(("name",), start=1, end=3),)
    verb      = "cancel"

The root template `/` (no segments) is accepted as Envoy's transcoder and
grpc-gateway accept it. A `:` inside a variable's segments (`/a/{x=var:verb}`) is
refused: a Verb follows the whole template, never a variable's sub-pattern.

Matching and percent-decoding of request paths live in `gateway.router`.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import TypeAlias
from urllib.parse import unquote_to_bytes

__all__ = [
    "DeepWildcard",
    "Literal",
    "Segment",
    "Template",
    "TemplateError",
    "Variable",
    "Wildcard",
    "parse_template",
]

# RFC 3986 pchar minus pct-encoded: unreserved, sub-delims, ':' and '@'.
_LITERAL_CHARS = frozenset(string.ascii_letters + string.digits + "-._~" + "!$&'()*+,;=" + ":@")
_HEX = frozenset(string.hexdigits)
_IDENT_START = frozenset(string.ascii_letters + "_")
_IDENT_CHARS = _IDENT_START | frozenset(string.digits)


class TemplateError(ValueError):
    """A template that breaks the http.proto grammar: a configuration error, found at load."""

    template: str
    reason: str
    position: int | None  # offset into `template`, when one character is to blame

    def __init__(self, template: str, reason: str, position: int | None = None) -> None:
        super().__init__(template, reason, position)
        self.template = template
        self.reason = reason
        self.position = position

    def __str__(self) -> str:
        where = "" if self.position is None else f" (at {self.position})"
        return f"invalid path template {self.template!r}: {self.reason}{where}"


@dataclass(frozen=True, slots=True)
class Literal:
    """A segment matched verbatim; `value` is as written, percent-escapes included."""

    value: str


@dataclass(frozen=True, slots=True)
class Wildcard:
    """`*`: exactly one path segment."""


@dataclass(frozen=True, slots=True)
class DeepWildcard:
    """`**`: zero or more path segments. Only literals may follow it (as Envoy allows)."""


Segment: TypeAlias = Literal | Wildcard | DeepWildcard


@dataclass(frozen=True, slots=True)
class Variable:
    """A field path bound to `Template.segments[start:end]`; `{x}` means `{x=*}`."""

    field_path: tuple[str, ...]
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed path template: flat segments, the variables over them, and the verb."""

    source: str
    segments: tuple[Segment, ...]
    variables: tuple[Variable, ...]
    verb: str | None

    def field_paths(self) -> tuple[tuple[str, ...], ...]:
        """The bound field paths, in template order (they become request fields)."""
        return tuple(variable.field_path for variable in self.variables)


def parse_template(text: str) -> Template:
    """Parse an HttpRule path; raise `TemplateError` (never anything else) when invalid."""
    return _Parser(text).parse()


class _Parser:
    """Recursive descent over `text[pos:end]`, where `end` stops before the verb."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.end = len(text)
        self.segments: list[Segment] = []
        self.offsets: list[int] = []  # where each flattened segment starts in `text`
        self.variables: list[Variable] = []

    def fail(self, reason: str, position: int | None) -> TemplateError:
        return TemplateError(self.text, reason, position)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < self.end else ""

    def parse(self) -> Template:
        if not self.text.startswith("/"):
            raise self.fail("must start with '/'", 0)
        if self.text == "/":  # the root: no segments (Envoy, grpc-gateway)
            return Template(self.text, (), (), None)
        verb = self.split_verb()
        self.pos = 1
        self.parse_segments(in_variable=False)
        if self.pos < self.end:
            ch = self.peek()
            reason = "unbalanced '}'" if ch == "}" else f"expected '/' but found {ch!r}"
            raise self.fail(reason, self.pos)
        self.check_deep_wildcard()
        return Template(self.text, tuple(self.segments), tuple(self.variables), verb)

    def split_verb(self) -> str | None:
        """Cut `:verb` off: the last ':' after the last '/' outside braces.

        Like grpc-gateway's tokenizer (internal/httprule/parse.go), a colon in an earlier
        segment (`/v1/a:b/c`) is part of a literal. A colon inside a variable
        (`{name=a:b}`) is refused: the grammar has Verb only after the template's
        Segments, and a route with it there could never be told from a verb.
        """
        depth, colon = 0, -1
        for index, ch in enumerate(self.text):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif depth == 0 and ch == "/":
                colon = -1
            elif depth == 0 and ch == ":":
                colon = index
            elif ch == ":" and self.in_variable_segments(index):
                raise self.fail("a verb (':') may only end the template, not a variable", index)
        if colon < 0:
            return None
        verb = self.text[colon + 1 :]
        if not verb:
            raise self.fail("empty verb", colon)
        self.check_literal(verb, colon + 1)
        self.end = colon
        return verb

    def in_variable_segments(self, index: int) -> bool:
        """Whether `index` falls after the `=` of the variable that encloses it."""
        brace = self.text.rfind("{", 0, index)
        return brace >= 0 and "=" in self.text[brace:index] and "}" not in self.text[brace:index]

    def parse_segments(self, *, in_variable: bool) -> None:
        self.parse_segment(in_variable=in_variable)
        while self.peek() == "/":
            self.pos += 1
            self.parse_segment(in_variable=in_variable)

    def parse_segment(self, *, in_variable: bool) -> None:
        start = self.pos
        if self.peek() == "{":
            if in_variable:
                raise self.fail("nested variables are not allowed", start)
            self.parse_variable()
            return
        while self.pos < self.end and self.text[self.pos] not in "/}":
            self.pos += 1
        text = self.text[start : self.pos]
        if not text:
            stray = not in_variable and self.peek() == "}"
            raise self.fail("unbalanced '}'" if stray else "empty segment", start)
        if text == "*":
            self.add(Wildcard(), start)
        elif text == "**":
            self.add(DeepWildcard(), start)
        else:
            self.check_literal(text, start)
            self.add(Literal(text), start)

    def parse_variable(self) -> None:
        brace = self.pos
        if self.text.find("}", brace, self.end) < 0:
            raise self.fail("unclosed '{'", brace)
        self.pos += 1
        field_path = self.parse_field_path()
        if field_path in (variable.field_path for variable in self.variables):
            raise self.fail(f"field path {'.'.join(field_path)!r} appears twice", brace + 1)
        first = len(self.segments)
        if self.peek() == "=":
            self.pos += 1
            self.parse_segments(in_variable=True)
        else:
            self.add(Wildcard(), brace)
        if self.peek() != "}":
            raise self.fail(f"expected '/' or '}}' but found {self.peek()!r}", self.pos)
        self.pos += 1
        self.variables.append(Variable(field_path, first, len(self.segments)))

    def parse_field_path(self) -> tuple[str, ...]:
        if self.peek() in ("=", "}"):
            raise self.fail("empty field path", self.pos)
        idents = [self.parse_ident()]
        while self.peek() == ".":
            self.pos += 1
            idents.append(self.parse_ident())
        if self.peek() not in ("=", "}"):
            raise self.fail(f"invalid character {self.peek()!r} in field path", self.pos)
        return tuple(idents)

    def parse_ident(self) -> str:
        """IDENT = [A-Za-z_][A-Za-z0-9_]*, a proto field name."""
        start = self.pos
        if self.peek() in (".", "=", "}"):
            raise self.fail("empty identifier in field path", start)
        if self.peek() not in _IDENT_START:
            raise self.fail(f"invalid character {self.peek()!r} in field path", start)
        while self.pos < self.end and self.text[self.pos] in _IDENT_CHARS:
            self.pos += 1
        return self.text[start : self.pos]

    def check_literal(self, text: str, offset: int) -> None:
        """LITERAL is RFC 3986 pchar; escapes must be `%XX` and decode to UTF-8."""
        index = 0
        while index < len(text):
            ch = text[index]
            if ch == "%":
                if len(text) < index + 3 or not _HEX.issuperset(text[index + 1 : index + 3]):
                    raise self.fail("invalid percent-escape", offset + index)
                index += 3
                continue
            if ch not in _LITERAL_CHARS:
                raise self.fail(f"invalid character {ch!r} in literal", offset + index)
            index += 1
        try:
            unquote_to_bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail("percent-escapes do not decode to UTF-8", offset) from None

    def check_deep_wildcard(self) -> None:
        """http.proto: `**` must end the path; we also allow literals after it (Envoy)."""
        deep = [i for i, segment in enumerate(self.segments) if isinstance(segment, DeepWildcard)]
        if not deep:
            return
        if len(deep) > 1:
            raise self.fail("more than one '**'", self.offsets[deep[1]])
        for index in range(deep[0] + 1, len(self.segments)):
            if not isinstance(self.segments[index], Literal):
                raise self.fail("only literal segments may follow '**'", self.offsets[index])

    def add(self, segment: Segment, offset: int) -> None:
        self.segments.append(segment)
        self.offsets.append(offset)

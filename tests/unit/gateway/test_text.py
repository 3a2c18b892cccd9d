"""gateway/text.py: RFC 5234 CTL, RFC 6749 §5.2 error_description, RFC 9110 quoted-string."""

from __future__ import annotations

import pytest

from gateway.text import challenge, error_description, has_control, quoted_string

C0 = "".join(chr(code) for code in range(0x20))


@pytest.mark.parametrize("char", [*C0, "\x7f"])
def test_every_c0_control_and_del_is_a_control(char: str) -> None:
    assert has_control(f"name{char}tail") is True


@pytest.mark.parametrize(
    "text", ["", "plain name", "~!@#$%^&*()_+{}|:<>?", "café", "\x80\x9f", "日本", '"\\']
)
def test_printable_ascii_and_non_ascii_are_not_controls(text: str) -> None:
    assert has_control(text) is False


def test_error_description_keeps_the_rfc_6749_set_unchanged() -> None:
    allowed = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in '"\\')
    assert error_description(allowed) == allowed


def test_error_description_replaces_quote_and_backslash_readably() -> None:
    assert error_description('scope "x" in a\\b') == "scope 'x' in a/b"


@pytest.mark.parametrize("char", [*C0, "\x7f"])
def test_error_description_replaces_controls_and_del(char: str) -> None:
    assert error_description(f"a{char}b") == "a?b"


def test_error_description_replaces_each_non_ascii_character() -> None:
    assert error_description("caf\u00e9 \u2013 \u65e5\u672c") == "caf? ? ??"


def test_quoted_string_escapes_quote_and_backslash_as_quoted_pairs() -> None:
    assert quoted_string('say "hi" \\ bye') == '"say \\"hi\\" \\\\ bye"'


def test_quoted_string_keeps_htab_and_replaces_other_controls_del_and_non_ascii() -> None:
    assert quoted_string("a\tb\nc\x00d\x7fe\u00e9") == '"a\tb?c?d?e?"'


def test_quoted_string_of_empty_text() -> None:
    assert quoted_string("") == '""'


def test_challenge_quotes_every_parameter() -> None:
    rendered = challenge("Bearer", [("realm", "api"), ("error_description", 'bad "x"')])
    assert rendered == 'Bearer realm="api", error_description="bad \\"x\\""'


def test_challenge_without_parameters_is_the_scheme() -> None:
    assert challenge("Negotiate", []) == "Negotiate"

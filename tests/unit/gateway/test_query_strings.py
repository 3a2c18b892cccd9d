"""gateway.query.parse_query / parse_form: urllib's parse_qsl pairs, decoded strictly.

parse_qsl replaces undecodable escapes with U+FFFD (`?x=%FF` read as "\ufffd"); the
gateway refuses them naming the parameter, as it refuses such paths (router.py).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import GatewayError
from gateway.query import parse_form, parse_query

_PIECE = st.text(alphabet=st.sampled_from("ab=+&% é\u4e00😀"), max_size=12)


@given(st.lists(st.tuples(_PIECE, _PIECE), max_size=5), st.booleans())
def test_pairs_as_parse_qsl_reads_utf8(pairs: list[tuple[str, str]], encode: bool) -> None:
    text = "&".join(f"{quote(n) if encode else n}={quote(v) if encode else v}" for n, v in pairs)
    if not encode and "%" in text:
        return  # a stray `%` is left as is by both, but may form an escape by accident
    expected = parse_qsl(text, keep_blank_values=True)
    assert parse_query(text.encode()) == expected
    assert parse_form(text) == expected


def test_blank_pieces_and_pieces_without_equals() -> None:
    assert parse_query(b"&a&&b=&=c&d=1=2&") == [("a", ""), ("b", ""), ("", "c"), ("d", "1=2")]


@pytest.mark.parametrize(
    ("raw", "param"),
    [(b"x=%FF", "x"), (b"a=1&x=%ED%A0%80", "x"), (b"%C3=1", "%C3"), (b"\xff=1", "\\xff")],
)
def test_undecodable_escapes_name_the_parameter(raw: bytes, param: str) -> None:
    with pytest.raises(GatewayError) as caught:
        parse_query(raw)
    assert (
        str(caught.value) == f'invalid parameter "{param}": percent-escapes do not decode to UTF-8'
    )
    assert caught.value.status.code == 3

"""Text checks of the HTTP grammars: control characters, quoted-strings in challenges,
and the character set of OAuth error descriptions.

Pure functions over `str`, shared by the gateway and the server so a character that
one refuses or rewrites is refused or rewritten the same way by the other:

- `has_control` — RFC 5234 Appendix B.1 `CTL` (%x00-1F / %x7F): C0 controls and DEL.
- `error_description` — RFC 6749 §5.2 (and RFC 6750 §3) `error_description`:
  %x20-21 / %x23-5B / %x5D-7E only, so no quote, no backslash, no control, no
  non-ASCII; such text is legal unescaped inside a quoted-string.
- `quoted_string` — RFC 9110 §5.6.4 `quoted-string` for auth-param values of a
  `WWW-Authenticate` challenge (RFC 9110 §11.2): `"` and `\\` become quoted-pairs.
- `challenge` — one RFC 9110 §11.2 challenge: `scheme param="value", ...`.
- `excerpt`, `quoted_excerpt` — how much of a client's text a gateway error message
  repeats, bare or as a JSON string.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

# RFC 5234 Appendix B.1: CTL = %x00-1F / %x7F.
CONTROL_CHARACTERS = frozenset(chr(code) for code in (*range(0x20), 0x7F))
_CTL = CONTROL_CHARACTERS
# RFC 6749 §5.2 forbids the two characters a quoted-string would have to escape;
# replacing them keeps messages readable ("name 'x'", "a/b") where '?' would not.
_DESCRIPTION_SUBSTITUTES = str.maketrans({'"': "'", "\\": "/"})
_QUOTED_PAIRS = str.maketrans({'"': '\\"', "\\": "\\\\"})
REPLACEMENT = "?"


EXCERPT_MAX = 40  # characters of a client's value a gateway error repeats


def excerpt(text: str, limit: int = EXCERPT_MAX) -> str:
    """`text` as a gateway error repeats it: whole up to `limit` characters, else its
    first `limit` and "...", so an answer stays small whatever was sent."""
    return text if len(text) <= limit else text[:limit] + "..."


def quoted_excerpt(text: str) -> str:
    """`text` (its first `EXCERPT_MAX` characters, then "..." outside the quotes) as a
    JSON string for an error message: what cannot be shown as itself (controls, lone
    surrogates, other non-printables such as U+2028) as `\\uXXXX` escapes (RFC 8259
    §7), so any message quoting it encodes and reads."""
    shown = json.dumps(text[:EXCERPT_MAX], ensure_ascii=False)
    if not shown.isprintable():
        shown = "".join(char if char.isprintable() else _escape(char) for char in shown)
    return shown + ("..." if len(text) > EXCERPT_MAX else "")


def _escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000  # RFC 8259 §7: a UTF-16 surrogate pair
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def has_control(text: str) -> bool:
    """True when `text` holds an RFC 5234 `CTL` character: %x00-1F (C0) or %x7F (DEL).

    Used to refuse values that must be one printable line: names, reasons, tickets,
    filter values. Non-ASCII characters are not controls here (C1 is not in `CTL`).
    """
    return not _CTL.isdisjoint(text)


def error_description(text: str) -> str:
    """`text` restricted to the RFC 6749 §5.2 `error_description` set.

    `"` becomes `'`, `\\` becomes `/`, and every other character outside
    %x20-7E (controls, DEL, non-ASCII) becomes `?`; the length is unchanged.
    The result may be placed between double quotes as is (RFC 6750 §3).
    """
    text = text.translate(_DESCRIPTION_SUBSTITUTES)
    if text.isascii() and text.isprintable():  # fast path: nothing else to replace
        return text
    return "".join(char if " " <= char <= "~" else REPLACEMENT for char in text)


def quoted_string(value: str) -> str:
    """`value` as an RFC 9110 §5.6.4 quoted-string, double quotes included.

    `"` and `\\` are sent as quoted-pairs; characters a quoted-string cannot carry
    at all (controls other than HTAB, DEL) and non-ASCII ones (obs-text is
    obsolete, RFC 9110 §5.5) become `?`.
    """
    if not (value.isascii() and value.isprintable()):
        value = "".join(
            char if char == "\t" or " " <= char <= "~" else REPLACEMENT for char in value
        )
    return f'"{value.translate(_QUOTED_PAIRS)}"'


def challenge(scheme: str, params: Iterable[tuple[str, str]]) -> str:
    """One RFC 9110 §11.2 challenge, `scheme name="value", ...`, every value quoted.

    `scheme` and the parameter names are tokens chosen by the caller, not checked.
    """
    rendered = ", ".join(f"{name}={quoted_string(value)}" for name, value in params)
    return f"{scheme} {rendered}" if rendered else scheme

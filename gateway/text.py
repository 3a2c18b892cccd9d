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
"""

from __future__ import annotations

from collections.abc import Iterable

# RFC 5234 Appendix B.1: CTL = %x00-1F / %x7F.
CONTROL_CHARACTERS = frozenset(chr(code) for code in (*range(0x20), 0x7F))
_CTL = CONTROL_CHARACTERS
# RFC 6749 §5.2 forbids the two characters a quoted-string would have to escape;
# replacing them keeps messages readable ("name 'x'", "a/b") where '?' would not.
_DESCRIPTION_SUBSTITUTES = str.maketrans({'"': "'", "\\": "/"})
_QUOTED_PAIRS = str.maketrans({'"': '\\"', "\\": "\\\\"})
REPLACEMENT = "?"


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

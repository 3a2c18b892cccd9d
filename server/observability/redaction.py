"""Hiding secrets in what the server shows about itself (/config/effective,
/health/system, log lines).

Two rules, both applied to every value shown:

- by name: a setting whose name has a word meaning a secret (`secret`, `password`,
  `passwd`, `pwd`, `token`, `key`, `apikey`, `credential(s)`, `private`) is hidden
  whole. Words are the name's parts split at `_`, `-`, `.` and camelCase humps, so
  `ORCHESTRATOR_PAGE_TOKEN_SECRET` and `apiKey` are secrets and `MONKEY_COUNT` is not.
- inside URLs (RFC 3986 §3.2.1 deprecates credentials in userinfo, yet
  `postgresql://user:pw@host/db` and peers' `client_id:client_secret@host` carry
  them): the userinfo is replaced whole, and the value of every query parameter
  whose name is a secret by the first rule (`?password=…`, `?access_token=…`).
  Several URLs in one value (ORCHESTRATOR_PEERS, comma-separated) are each redacted.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

REDACTED: Final = "**redacted**"
SECRET_WORDS: Final = frozenset(
    {
        "secret",
        "secrets",
        "password",
        "passwd",
        "pwd",
        "token",
        "tokens",
        "key",
        "keys",
        "apikey",
        "credential",
        "credentials",
        "private",
    }
)
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
# scheme "://" then an authority holding an "@": anything URL-like with userinfo.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s,]+")


def words(name: str) -> list[str]:
    """`name` split into lower-case words: at `_`, `-`, `.`, spaces and camelCase humps
    (`pageTokenSecret` -> page, token, secret; `DB_URL` -> db, url)."""
    found: list[str] = []
    for part in re.split(r"[_\-.\s]+", name):
        found.extend(word.lower() for word in _WORD.findall(part))
    return found


def is_secret_name(name: str) -> bool:
    """Whether a setting or parameter called `name` holds a secret (module rule one)."""
    return any(word in SECRET_WORDS for word in words(name))


def redact_url(url: str) -> tuple[str, bool]:
    """`url` with its userinfo and secret query values replaced by REDACTED, and whether
    anything was. A value that is not `scheme://...` comes back unchanged.

    The userinfo is found without trusting the URL to be well formed: everything up to
    the last `@` goes when no `/` precedes it or a `:` precedes the first `/` (so a
    password holding an unescaped `/` is still hidden; `host:8080/a@b` is over-hidden,
    which errs on the safe side)."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme:
        return url, False
    changed = False
    at = rest.rfind("@")
    if at >= 0:
        before = rest[:at]
        slash = before.find("/")
        if slash < 0 or ":" in before[:slash]:
            rest = REDACTED + rest[at:]
            changed = True
    try:
        parts = urlsplit(f"{scheme}://{rest}")
    except ValueError:
        return f"{scheme}://{rest}", changed
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_secret_name(name) for name, _ in pairs):
            query = "&".join(
                f"{quote(name, safe='')}={REDACTED if is_secret_name(name) else quote(value)}"
                for name, value in pairs
            )
            return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment)), True
    return f"{scheme}://{rest}", changed


def redact_text(text: str) -> tuple[str, bool]:
    """Every URL inside `text` redacted (`redact_url`), and whether any was."""
    changed = False

    def one(match: re.Match[str]) -> str:
        nonlocal changed
        redacted, hit = redact_url(match.group(0))
        changed = changed or hit
        return redacted

    result = _URL.sub(one, text)
    return result, changed


def redact_value(name: str, value: object) -> tuple[object, bool]:
    """A setting's value as it may be shown, and whether anything was hidden: a secret
    by name is REDACTED whole when set (an unset or empty one shows as it is, so an
    operator sees that it is unset); any string has its URLs' credentials redacted."""
    if is_secret_name(name):
        if value is None or value == "":
            return value, False
        return REDACTED, True
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, list | tuple):
        items = [redact_value(name, item) for item in value]
        return [item for item, _ in items], any(hit for _, hit in items)
    return value, False

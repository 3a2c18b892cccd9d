"""When two http(s) URLs name the same resource: RFC 3986 §6.2.2-6.2.3 normal form.

DPoP compares a proof's `htu` with the URL of the request it came with "after
syntax-based and scheme-based normalization" (RFC 9449 §4.3, step 9), and a client
may spell the same URL differently from how the request reached us (a gateway keeps
the path's escapes as received). `normalize_url` maps every spelling to one string:

- characters a URI cannot hold raw (space, non-ASCII: an IRI, RFC 3987 §3.1) are
  UTF-8 percent-encoded;
- percent-encoding normalized (§6.2.2.1-6.2.2.2): an escaped unreserved character
  (`%74` is `t`, `%7E` is `~`) is decoded, every other escape upper-cased (`%2f` is
  `%2F`); escaped reserved characters stay escaped (`%2F` is not `/`);
- case (§6.2.2.1): scheme and host lower-cased;
- dot-segments removed (§6.2.2.3, by the §5.2.4 algorithm): `/a/./b/../c` is `/a/c`;
- scheme-based (§6.2.3): the default port (80, 443) and an empty port dropped, an
  empty path is `/`.

Query and fragment are left out: `htu` excludes them (RFC 9449 §4.2), and this form
exists to compare `htu` values. Userinfo is kept, so a URL with one never equals the
URL of a request.
"""

from __future__ import annotations

import re
import string
from urllib.parse import quote, urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")  # RFC 3986 §2.3
_RAW_SAFE = "!$&'()*+,;=:@/%"  # reserved (§2.2) characters a path or userinfo holds raw
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")


def normalize_url(url: str) -> str | None:
    """`scheme://[userinfo@]host[:port]/path` in normal form; None when `url` is not an
    absolute http(s) URL with a host (or its port is not a number up to 65535)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    host = _upper_escapes(_escapes(parts.hostname).lower())
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal (urlsplit removed the brackets)
    userinfo = ""
    if "@" in parts.netloc:
        userinfo = _escapes(parts.netloc.rsplit("@", 1)[0]) + "@"
    authority = f"{userinfo}{host}"
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        authority = f"{authority}:{port}"
    path = remove_dot_segments(_escapes(parts.path)) or "/"
    return f"{scheme}://{authority}{path}"


def remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4: `.` and `..` segments resolved (`..` never above the root)."""
    output: list[str] = []
    rest = path
    while rest:
        if rest.startswith("../"):
            rest = rest[3:]
        elif rest.startswith(("./", "/./")):
            rest = rest[2:]
        elif rest == "/.":
            rest = "/"
        elif rest.startswith("/../"):
            rest = rest[3:]
            if output:
                output.pop()
        elif rest == "/..":
            rest = "/"
            if output:
                output.pop()
        elif rest in (".", ".."):
            rest = ""
        else:
            end = rest.find("/", 1)
            segment, rest = (rest, "") if end == -1 else (rest[:end], rest[end:])
            output.append(segment)
    return "".join(output)


def _escapes(text: str) -> str:
    """Raw characters a URI cannot hold encoded; unreserved escapes decoded, the rest
    upper-cased (RFC 3986 §6.2.2.1-6.2.2.2)."""
    encoded = quote(text, safe=_RAW_SAFE)

    def normal(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else f"%{match.group(1).upper()}"

    return _ESCAPE.sub(normal, encoded)


def _upper_escapes(text: str) -> str:
    return _ESCAPE.sub(lambda match: f"%{match.group(1).upper()}", text)

"""One spelling per host, so "is this URL us?" and "is this peer already listed?" cannot
be answered differently for two spellings of one address.

A resolver (glibc's `getaddrinfo`, hence httpx, curl and browsers on Linux) reaches the
same machine for `127.0.0.1`, `127.1`, `0x7f.0.0.1`, `2130706433`, `127.0.0.1.` and
`[::ffff:127.0.0.1]`: the legacy IPv4 forms of `inet_aton(3)` (parts in decimal, octal
or hex; the last part fills the remaining bytes), a trailing root dot (RFC 1034 §3.1)
and IPv4-mapped IPv6 (RFC 4291 §2.5.5.2). Comparing hosts as typed lets a URL of this
very server through a loop check and syncs one peer twice. No name is resolved here
(no DNS from the domain): names are only lower-cased and stripped of the root dot.
"""

from __future__ import annotations

import ipaddress
import re
import socket

# What inet_aton accepts as an IPv4 address: one to four dot-separated numbers, each
# decimal, octal (leading 0) or hex (0x). Anything else is a name.
_LEGACY_IPV4 = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}$")


def canonical_host(host: str) -> str:
    """`host` (a URL's host, with or without IPv6 brackets) in one spelling: IP addresses
    as `ipaddress` prints them (IPv4 dotted quad, IPv6 compressed, IPv4-mapped IPv6 as
    its IPv4), names lower case without a trailing dot. Never raises; never resolves."""
    text = host.strip().strip("[]").lower()
    if text.endswith(".") and text != ".":
        text = text[:-1]
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        address = None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    if address is not None:
        return str(address)
    if _LEGACY_IPV4.fullmatch(text):
        try:
            return socket.inet_ntoa(socket.inet_aton(text))
        except OSError:  # a number out of range (e.g. 256.1.1.1.1): a name, as resolvers fail it
            return text
    return text


def is_loopback(host: str) -> bool:
    """Whether the canonical `host` is a loopback or unspecified address (127.0.0.0/8,
    ::1, 0.0.0.0, ::; a connection to the unspecified address reaches this machine on
    Linux) or `localhost` (RFC 6761 §6.3)."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified

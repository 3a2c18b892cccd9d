"""One spelling per host (server/domain/hosts.py): the spellings a Linux resolver sends
to one address compare equal, names are never resolved, nothing raises."""

from __future__ import annotations

import pytest

from server.domain.hosts import canonical_host, is_loopback
from server.domain.registry import SelfAddresses


@pytest.mark.parametrize(
    ("host", "canonical"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("[::ffff:127.0.0.1]", "127.0.0.1"),
        ("::FFFF:7f00:1", "127.0.0.1"),
        ("[0:0:0:0:0:0:0:1]", "::1"),
        ("LocalHost.", "localhost"),
        ("Example.COM", "example.com"),
        ("256.1.1.1.1", "256.1.1.1.1"),  # not an address: a name, left as typed
        ("1.2.3.4.5", "1.2.3.4.5"),
        ("0x", "0x"),
        ("", ""),
        (".", "."),
    ],
)
def test_canonical_host(host: str, canonical: str) -> None:
    assert canonical_host(host) == canonical


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.9.9.9", True),
        ("::1", True),
        ("0.0.0.0", True),
        ("::", True),
        ("localhost", True),
        ("api.localhost", True),
        ("10.0.0.1", False),
        ("example.com", False),
        ("notlocalhost", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_self_addresses_compare_canonical_spellings() -> None:
    bound_public = SelfAddresses(frozenset({("orch.example", 443), ("10.0.0.7", 5099)}))
    assert bound_public.includes("https://ORCH.example./x")
    assert bound_public.includes("http://[::ffff:10.0.0.7]:5099/registry")
    assert bound_public.includes("http://0xa.0.0.7:5099/")
    assert not bound_public.includes("http://127.0.0.1:5099/")  # not bound to loopback
    assert not bound_public.includes("http://10.0.0.7:5100/")
    loopback = SelfAddresses(frozenset({("127.0.0.1", 5099)}), frozenset({5099}))
    for url in (
        "http://127.1:5099/",
        "http://localhost:5099",
        "http://[::1]:5099",
        "http://0:5099",
    ):
        assert loopback.includes(url), url
    assert not loopback.includes("http://127.0.0.1:5098/")

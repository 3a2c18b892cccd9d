"""URLs are compared in RFC 3986 §6.2.2-6.2.3 normal form, not as strings (issue 8,
item 3): the one normaliser DPoP's `htu` check uses (RFC 9449 §4.3) at the token
endpoint and the resource server alike."""

from __future__ import annotations

import pytest

from server.identity.dpop import DpopError, DpopVerifier
from server.identity.url_equivalence import normalize_url, remove_dot_segments
from tests.unit.identity.proofs import client_key, make_proof

TOKEN = "https://api.example/oauth/token"


@pytest.mark.parametrize(
    "spelling",
    [
        "https://api.example/oauth/%74oken",  # unreserved escape decoded
        "https://api.example/%6F%61%75%74%68/token",
        "https://api.example/oauth/./token",  # dot-segments removed
        "https://api.example/oauth/x/../token",
        "https://api.example/./oauth/token",
        "https://api.example/../oauth/token",  # never above the root
        "https://api.example/oauth/%2E/token",  # an escaped dot is a dot
        "https://api.example/oauth/%2e%2E/oauth/token",
        "HTTPS://API.Example/oauth/token",  # scheme and host case
        "https://api.example:443/oauth/token",  # default port
        "https://api.example:/oauth/token",  # empty port
        "https://api.example/oauth/token?x=1#f",  # query and fragment ignored
        " https://api.example/oauth/token",
    ],
)
def test_spellings_of_the_token_endpoint(spelling: str) -> None:
    assert normalize_url(spelling) == TOKEN


@pytest.mark.parametrize(
    ("url", "normal"),
    [
        ("http://h/a%2fb", "http://h/a%2Fb"),  # escape case; reserved stays escaped
        ("http://h/a%7e%7Eb", "http://h/a~~b"),
        ("http://h/caf\u00e9", "http://h/caf%C3%A9"),  # an IRI's character, UTF-8 escaped
        ("http://h/a b", "http://h/a%20b"),
        ("http://h", "http://h/"),
        ("http://h:8080/x", "http://h:8080/x"),
        ("https://h:80/x", "https://h:80/x"),  # 80 is not https's default
        ("http://[::1]:80/x", "http://[::1]/x"),
        ("http://U%73er@H/x", "http://User@h/x"),  # userinfo kept, case and all
        ("http://h/a;b=c/d:e@f", "http://h/a;b=c/d:e@f"),
    ],
)
def test_normal_forms(url: str, normal: str) -> None:
    assert normalize_url(url) == normal


@pytest.mark.parametrize(
    "other",
    [
        "https://api.example/oauth%2Ftoken",  # %2F is data, not a separator
        "https://api.example/oauth/TOKEN",  # the path is case-sensitive
        "https://api.example/oauth/token/",
        "http://api.example/oauth/token",
        "https://api.example:8443/oauth/token",
        "https://user@api.example/oauth/token",
        "https://api.example.evil/oauth/token",
    ],
)
def test_different_urls_stay_different(other: str) -> None:
    assert normalize_url(other) != TOKEN


@pytest.mark.parametrize("url", ["ftp://h/", "/oauth/token", "https:///x", "http://h:99999/", ""])
def test_not_an_absolute_http_url(url: str) -> None:
    assert normalize_url(url) is None


@pytest.mark.parametrize(
    ("path", "resolved"),
    [  # RFC 3986 §5.4.1-5.4.2's examples, as paths
        ("/a/b/c/./../../g", "/a/g"),
        ("mid/content=5/../6", "mid/6"),
        ("/a/b/c/../../../g", "/g"),
        ("/a/b/c/../../../../g", "/g"),
        ("/a/b/..", "/a/"),
        ("/a/b/.", "/a/b/"),
        ("/a/b/.g", "/a/b/.g"),
        ("/a/b/g..", "/a/b/g.."),
        ("", ""),
    ],
)
def test_remove_dot_segments(path: str, resolved: str) -> None:
    assert remove_dot_segments(path) == resolved


@pytest.mark.parametrize(
    ("htu", "request_url"),
    [
        ("https://api.example/oauth/%74oken", TOKEN),
        ("https://api.example/oauth/./token", TOKEN),
        (TOKEN, "https://api.example/oauth/%74oken"),
        ("https://api.example/jobengine/%73ources", "https://api.example/jobengine/sources"),
        ("https://api.example/a%2fb", "https://api.example/a%2Fb"),
    ],
)
def test_the_proof_check_compares_normal_forms(htu: str, request_url: str) -> None:
    key = client_key()
    proof = make_proof(key, htu=htu)
    checked = DpopVerifier().verify(proof, http_method="POST", http_url=request_url)
    assert (checked.jkt, checked.htu) == (key.thumbprint(), htu)


def test_an_escaped_slash_is_not_a_slash_to_the_proof_check() -> None:
    proof = make_proof(client_key(), htu="https://api.example/oauth%2Ftoken")
    with pytest.raises(DpopError, match="htu does not match the request URL"):
        DpopVerifier().verify(proof, http_method="POST", http_url=TOKEN)

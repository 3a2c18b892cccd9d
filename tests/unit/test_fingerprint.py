"""Error fingerprints (server/domain/fingerprint.py, issue 10 point 1): what is masked,
what clusters together and what does not."""

from __future__ import annotations

import pytest

from server.domain.fingerprint import PATTERN, fingerprint, normalise


@pytest.mark.parametrize(
    ("message", "normalised"),
    [
        ("timeout after 3012 ms on host-7", "timeout after <n> ms on host-<n>"),
        ("timeout after 2977 ms on host-2", "timeout after <n> ms on host-<n>"),
        (
            "job 0b3c5a4e-1234-4abc-8def-9f1d2c3b4a5e failed",
            "job <uuid> failed",
        ),
        ("at 2026-11-30T10:00:00.5Z and 2026-11-30 10:00+01:00", "at <ts> and <ts>"),
        ("segfault at 0x7ffe1a, object deadbeef01", "segfault at <hex>, object <hex>"),
        ("connect to 10.0.0.7:5432 refused", "connect to <ip> refused"),
        ("took 1.5e3 s for user42 in v1.2.3", "took <n> s for <n> in <n>"),
        ("  spread \t over\n lines  ", "spread over lines"),
        ("café ü9 déjà", "café ü<n> déjà"),
        ("no variable part", "no variable part"),
        ("", ""),
    ],
)
def test_normalise_masks_the_variable_parts(message: str, normalised: str) -> None:
    assert normalise(message) == normalised


def test_the_issues_example_clusters() -> None:
    first = fingerprint("timeout", "DEADLINE", "timeout after 3012 ms on host-7")
    second = fingerprint("timeout", "DEADLINE", "timeout after 2977 ms on host-2")
    assert first == second
    assert PATTERN.fullmatch(first)


@pytest.mark.parametrize(
    ("category", "code", "message"),
    [
        ("timeout", "DEADLINE", "connection refused by host-7"),  # other words
        ("dependency", "DEADLINE", "timeout after 3012 ms on host-7"),  # other category
        ("timeout", "HTTP_503", "timeout after 3012 ms on host-7"),  # other code
    ],
)
def test_other_failures_do_not_cluster(category: str, code: str, message: str) -> None:
    assert fingerprint(category, code, message) != fingerprint(
        "timeout", "DEADLINE", "timeout after 3012 ms on host-7"
    )


def test_the_fingerprint_is_stable() -> None:
    """Stored with every entry and cluster: a change of algorithm must be deliberate."""
    assert fingerprint("timeout", "DEADLINE", "timeout after 3012 ms on host-7") == (
        fingerprint("timeout", "DEADLINE", "timeout after <n> ms on host-<n>")
    )
    assert fingerprint("timeout", "DEADLINE", "timeout after 3012 ms on host-7") == (
        "a1f7ee3f1f105ee3"
    )

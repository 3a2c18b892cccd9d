"""Error fingerprints: which dead-letter entries are "the same failure" (issue 10 point 1).

A fingerprint is the hex SHA-256 (first 16 hex digits, 64 bits) of the error's
category, code and *normalised* message. Normalising masks what differs between
occurrences of one failure and keeps the words that say what failed, the way Camunda
clusters incidents by error hash and Sentry groups events by a masked message:

| masked | example | becomes |
|---|---|---|
| RFC 3339 / ISO 8601 timestamps | `2026-11-30T10:00:00.5Z` | `<ts>` |
| UUIDs | `0b3c5a4e-...-9f1d2c3b4a5e` | `<uuid>` |
| hex literals, and hex runs of 8+ digits | `0x7ffe`, `deadbeef01` | `<hex>` |
| IPv4 addresses (with a port) | `10.0.0.7:5432` | `<ip>` |
| any word holding a digit (ids, numbers, `host-7`'s `7`) | `3012`, `7`, `job42`, `1.5` | `<n>` |

and runs of whitespace become one space. So `timeout after 3012 ms on host-7` and
`timeout after 2977 ms on host-2` both read `timeout after <n> ms on host-<n>` and
share a fingerprint, while `connection refused by db` does not.

The category and code are hashed with the message, so one masked text under two
codes is two clusters. The algorithm is part of the stored data (entries and their
cluster counters keep the fingerprint they were written with); changing it splits
old and new entries into different clusters, so it is versioned (`VERSION`, hashed
in).
"""

from __future__ import annotations

import hashlib
import re

VERSION = "1"
LENGTH = 16  # hex digits kept: 64 bits, collisions negligible within one tenant
PATTERN = re.compile(r"^[0-9a-f]{16}$")

# Order matters: wider shapes first, so a timestamp is not read as numbers.
_MASKS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(
            r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?"
            r"(?:Z|[+-]\d{2}:?\d{2})?",
            re.IGNORECASE,
        ),
        "<ts>",
    ),
    (
        re.compile(
            r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.IGNORECASE
        ),
        "<uuid>",
    ),
    (re.compile(r"\b0x[0-9a-f]+\b", re.IGNORECASE), "<hex>"),
    (re.compile(r"\b(?=[0-9a-f]*\d)[0-9a-f]{8,}\b", re.IGNORECASE), "<hex>"),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"), "<ip>"),
    # A word holding a digit: a number (with decimals or exponent), an id like job42,
    # the 7 of host-7 (the hyphen is not a word character, so "host" stays).
    (re.compile(r"\w*\d\w*(?:\.\w*\d\w*)*", re.ASCII), "<n>"),
    (re.compile(r"\s+"), " "),
)


def normalise(message: str) -> str:
    """`message` with its variable parts masked (see the module's table), trimmed.

    >>> normalise("timeout after 3012 ms on host-7")
    'timeout after <n> ms on host-<n>'
    """
    text = message
    for pattern, mask in _MASKS:
        text = pattern.sub(mask, text)
    return text.strip()


def fingerprint(category: str, code: str, message: str) -> str:
    """The 16-hex-digit fingerprint of an error: SHA-256 over the algorithm version,
    category, code and normalised message (unit separators between them)."""
    canonical = "\x1f".join((VERSION, category, code, normalise(message)))
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:LENGTH]

"""Fetch one service's OpenAPI document for a registry poll (`domain/registry.py`).

One shared httpx client per process. Every fetch is bounded: the whole exchange
within `timeout` seconds (connect, each read and the total, so a server trickling
bytes cannot hold a poll), at most `max_bytes` of body (a larger Content-Length is
refused before reading, a body growing past it is cut off), at most 5 redirects,
each hop checked against this server's own registry and peer endpoints (a loop).
Parsing a large document runs in a worker thread so the event loop keeps serving.
Every failure is a `FetchFailure` with a code and a message naming the URL; the
caller reports it for that service, never as the poll's error.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from server.domain.openapi_drift import NotOpenApi, canonical, document_digest, outline
from server.domain.registry import Fetched, FetchFailure, SelfAddresses

MAX_REDIRECTS = 5
THREAD_THRESHOLD_BYTES = 256 * 1024  # parse bigger documents off the event loop
CHUNK_BYTES = 64 * 1024


class OpenApiFetcher:
    """`OpenApiFetcher` of the domain: `await fetcher(url)` -> Fetched, or FetchFailure."""

    def __init__(
        self,
        *,
        timeout: float,
        max_bytes: int,
        addresses: SelfAddresses,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._addresses = addresses
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
            headers={"Accept": "application/json"},
            event_hooks={"request": [self._refuse_loops]},
            transport=transport,
        )

    async def _refuse_loops(self, request: httpx.Request) -> None:
        if self._addresses.loops(str(request.url)):
            raise FetchFailure(
                "LOOP",
                f"{request.url} is this server's own registry or peer endpoint; "
                "fetching it would call itself in a loop",
            )

    async def close(self) -> None:
        await self._http.aclose()

    async def __call__(self, url: str) -> Fetched:
        try:
            async with asyncio.timeout(self.timeout):
                body = await self._get(url)
        except TimeoutError:
            raise FetchFailure(
                "TIMEOUT", f"GET {url} took longer than {self.timeout:g} s"
            ) from None
        except httpx.TooManyRedirects:
            raise FetchFailure(
                "HTTP_ERROR", f"GET {url} redirected more than {MAX_REDIRECTS} times"
            ) from None
        except httpx.TimeoutException:
            raise FetchFailure(
                "TIMEOUT", f"GET {url} took longer than {self.timeout:g} s"
            ) from None
        except httpx.HTTPError as exc:
            raise FetchFailure(
                "UNREACHABLE", f"GET {url} failed: {type(exc).__name__} {exc}".strip()
            ) from None
        # A host httpx cannot read (idna's IDNAError, InvalidURL): registration refuses
        # those now (registry.py `_idna_host`); an entry stored before still polls.
        except (UnicodeError, httpx.InvalidURL):
            raise FetchFailure(
                "UNREACHABLE",
                f"GET {url} failed: its host is not a valid internationalized domain name",
            ) from None
        if len(body) > THREAD_THRESHOLD_BYTES:
            return await asyncio.to_thread(_parsed, url, body)
        return _parsed(url, body)

    async def _get(self, url: str) -> bytes:
        async with self._http.stream("GET", url) as response:
            if not 200 <= response.status_code < 300:
                raise FetchFailure(
                    "HTTP_ERROR",
                    f"GET {response.url} answered {response.status_code} "
                    f"{response.reason_phrase}".rstrip(),
                )
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_bytes:
                raise self._too_large(url, f"declares {int(declared)} bytes")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes(CHUNK_BYTES):
                size += len(chunk)
                if size > self.max_bytes:
                    raise self._too_large(url, "is longer")
                chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self, url: str, what: str) -> FetchFailure:
        return FetchFailure(
            "TOO_LARGE",
            f"the document at {url} {what}; the limit is {self.max_bytes} bytes "
            "(REGISTRY_OPENAPI_MAX_BYTES)",
        )


def _parsed(url: str, body: bytes) -> Fetched:
    """Parse, outline and digest one document. Raises FetchFailure NOT_JSON/NOT_OPENAPI."""
    try:
        document: Any = json.loads(body)
    except RecursionError:
        raise FetchFailure("NOT_JSON", f"the document at {url} nests too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise FetchFailure("NOT_JSON", f"the document at {url} is not JSON: {exc}") from None
    try:
        found = outline(document)
        text = canonical(document)
        digest = document_digest(document)
    except NotOpenApi as exc:
        raise FetchFailure("NOT_OPENAPI", f"the document at {url} {exc}") from None
    except RecursionError:
        raise FetchFailure("NOT_JSON", f"the document at {url} nests too deeply") from None
    return Fetched(outline=found, digest=digest, document=text, size_bytes=len(body))

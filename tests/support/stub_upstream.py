"""A real HTTP server standing in for the mesh's services (doc store, reporting,
secure analyzer, notification service) in tests: Starlette on uvicorn, on a free
loopback port, in the test's event loop.

Every request is recorded (`hits`: method, path, headers, body bytes). What a path
answers is set per test with `stub.answer(path, Reply(...))`: a status and a body,
or `hang=True` (never answers), `chunks` (a streamed body), garbage bytes... A path
without a reply answers 200 with the canned answers of `DEFAULTS` (the seed's demo
reports, an analyzer suggestion) or `{"ok": true, "echo": <the JSON sent>}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

SUMMARY = {"total": 3, "by_severity": {"low": 2, "med": 1}, "generated_by": "stub"}
LOG_ANALYSIS = {
    "overview": {"count": 12, "by_level": {"info": 9, "warn": 2, "error": 1}},
    "sample": [
        {"service": "orchestrator", "level": "info", "message": "workflow run requested"},
        {"service": "reporting", "level": "warn", "message": "slow query"},
    ],
}
SUGGESTION = {"allowed_models": ["ollama", "bedrock"], "sensitive": False}
DEFAULTS: dict[str, Any] = {
    "/reports/log_analysis": LOG_ANALYSIS,
    "/suggest": SUGGESTION,
    "/summarize": {"summary": "short text", "provider": "ollama"},
}


@dataclass
class Reply:
    status: int = 200
    body: bytes | None = None  # None: the JSON of `json`
    json: Any = None
    hang: bool = False
    chunks: int = 0  # stream this many chunks of `chunk` bytes (no Content-Length)
    chunk: bytes = b"x" * 1024
    content_type: str = "application/json"
    times: int | None = None  # answer like this this many times, then fall back


@dataclass
class Hit:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)  # when it arrived

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class StubUpstream:
    url: str = ""
    hits: list[Hit] = field(default_factory=list)
    replies: dict[str, list[Reply]] = field(default_factory=dict)

    def answer(self, path: str, *replies: Reply) -> None:
        self.replies[path] = list(replies)

    def reset(self) -> None:
        self.hits.clear()
        self.replies.clear()

    def hits_of(self, path: str) -> list[Hit]:
        return [hit for hit in self.hits if hit.path == path]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        body = await request.body()
        path = request.url.path
        self.hits.append(Hit(request.method, path, dict(request.headers), body))
        response = await self._respond(path, body)
        await response(scope, receive, send)

    async def _respond(self, path: str, body: bytes) -> Response:
        queue = self.replies.get(path)
        reply: Reply | None = None
        if queue:
            reply = queue[0]
            if reply.times is not None:
                reply.times -= 1
                if reply.times <= 0:
                    queue.pop(0)
        if reply is None:
            if path == "/reports/generate" and _kind(body) == "summary":
                return _json(SUMMARY)
            if path in DEFAULTS:
                return _json(DEFAULTS[path])
            return _json({"ok": True, "echo": json.loads(body) if body else None})
        if reply.hang:
            await asyncio.sleep(3600)
        if reply.chunks:
            chunk, count = reply.chunk, reply.chunks

            async def stream() -> AsyncIterator[bytes]:
                for _ in range(count):
                    yield chunk
                    await asyncio.sleep(0)

            return StreamingResponse(stream(), reply.status, media_type=reply.content_type)
        content = reply.body if reply.body is not None else json.dumps(reply.json).encode()
        return Response(content, reply.status, media_type=reply.content_type)


def _kind(body: bytes) -> Any:
    try:
        return json.loads(body).get("kind")
    except (ValueError, AttributeError):
        return None


def _json(value: Any) -> Response:
    return Response(json.dumps(value).encode(), 200, media_type="application/json")


@contextlib.asynccontextmanager
async def stub_upstream() -> AsyncIterator[StubUpstream]:
    """A running stub on 127.0.0.1 (its `url` set), stopped on exit."""
    stub = StubUpstream()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    stub.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(
        stub, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=0
    )
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[assignment,method-assign]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            await task
            raise RuntimeError("stub upstream exited during start-up")
        await asyncio.sleep(0.01)
    try:
        yield stub
    finally:
        server.should_exit = True
        server.force_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)

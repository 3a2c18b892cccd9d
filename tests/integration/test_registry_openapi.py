"""POST /registry/poll-openapi (issue 12 point 4): snapshots and drift, and every way a
document can fail to be had answered per service, never as the poll's error.

The drift test polls a real gateway's /openapi.json before and after a proto change:
`orchestrator gateway` processes in front of the test server, the first built from
the committed descriptor set, the second, on the same port, from that set with one
RPC removed, one added and one message given a new field. The failure tests poll
small local HTTP servers that answer what a broken service answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

from server.app import Application
from server.storage.tables import RegistrySnapshotRow, table_of
from tests.conftest import settings_for
from tests.support.auth import TokenFactory

ORCHESTRATOR = str(Path(sys.executable).with_name("orchestrator"))
DESCRIPTORS = Path(__file__).parents[2] / "gen" / "orchestrator" / "descriptor_set.binpb"
REGISTRY_FILE = "orchestrator/mesh/v1/registry_service.proto"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_snapshots = table_of(RegistrySnapshotRow)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
async def admin(tokens: TokenFactory, http_base: str) -> AsyncIterator[httpx.AsyncClient]:
    token = await tokens.token(None, ("orch:admin",))
    headers = {"Authorization": f"Bearer {token}", "X-Stella-Operator-Reason": "drift tests"}
    async with httpx.AsyncClient(base_url=http_base, headers=headers, timeout=60) as client:
        yield client


def changed_descriptor_set(target: Path) -> None:
    """The committed descriptor set with a proto change: RegistryService loses ListPeers
    (GET /peers), gains AnnounceService (POST /registry/announce, RegisterService's
    types) and RegisteredService gains a string field `owner`."""
    files = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTORS.read_bytes())
    [proto] = [f for f in files.file if f.name == REGISTRY_FILE]
    [service] = [s for s in proto.service if s.name == "RegistryService"]
    kept = [m for m in service.method if m.name != "ListPeers"]
    [register] = [m for m in kept if m.name == "RegisterService"]
    announce = descriptor_pb2.MethodDescriptorProto()
    announce.CopyFrom(register)
    announce.name = "AnnounceService"
    announce.options.Extensions[annotations_pb2.http].post = "/registry/announce"
    del service.method[:]
    service.method.extend([*kept, announce])
    [message] = [m for m in proto.message_type if m.name == "RegisteredService"]
    message.field.add(
        name="owner",
        number=10,
        json_name="owner",
        type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    )
    target.write_bytes(files.SerializeToString())


@contextlib.asynccontextmanager
async def gateway_process(
    descriptors: Path, upstream: str, port: int, cwd: Path
) -> AsyncIterator[str]:
    """`orchestrator gateway` on 127.0.0.1:`port` until the block ends; its base URL."""
    log = cwd / f"gateway-{port}-{uuid.uuid4().hex[:6]}.log"
    command = [ORCHESTRATOR, "gateway", "--descriptor-set", str(descriptors)]
    command += ["--upstream", upstream, "--port", str(port)]
    with log.open("w") as out:
        proc = await asyncio.create_subprocess_exec(
            *command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=1) as http:
            deadline = time.monotonic() + 30
            while True:
                assert proc.returncode is None, log.read_text()
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{base}/openapi.json")).status_code == 200:
                        break
                assert time.monotonic() < deadline, "gateway did not start"
                await asyncio.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def _outline(document: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """The test's own reading of a document: operations and schemas, each as JSON text."""
    operations = {
        f"{m.upper()} {path}": json.dumps([item.get("parameters"), item[m]], sort_keys=True)
        for path, item in document["paths"].items()
        for m in METHODS
        if m in item
    }
    schemas = {
        name: json.dumps(schema, sort_keys=True)
        for name, schema in document.get("components", {}).get("schemas", {}).items()
    }
    return operations, schemas


def expected_drift(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[str]]:
    (ops_a, schemas_a), (ops_b, schemas_b) = _outline(before), _outline(after)

    def diff(a: dict[str, str], b: dict[str, str]) -> tuple[list[str], ...]:
        return (
            sorted(b.keys() - a.keys()),
            sorted(a.keys() - b.keys()),
            sorted(k for k in a.keys() & b.keys() if a[k] != b[k]),
        )

    ops, schemas = diff(ops_a, ops_b), diff(schemas_a, schemas_b)
    names = ("added", "removed", "changed")
    drift = {f"{n}Operations": v for n, v in zip(names, ops, strict=True)}
    drift |= {f"{n}Schemas": v for n, v in zip(names, schemas, strict=True)}
    return drift


async def _poll(admin: httpx.AsyncClient, *names: str) -> list[dict[str, Any]]:
    response = await admin.post("/registry/poll-openapi", json={"names": list(names)})
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    return results


async def test_polling_a_gateway_before_and_after_a_proto_change_reports_the_drift(
    admin: httpx.AsyncClient, app: Application, grpc_target: str, tmp_path: Path
) -> None:
    changed = tmp_path / "changed.binpb"
    changed_descriptor_set(changed)
    port = free_port()
    name = f"gateway-{uuid.uuid4().hex[:8]}"
    base = f"http://127.0.0.1:{port}"
    registered = await admin.post("/registry/register", json={"name": name, "baseUrl": base})
    assert registered.status_code == 201, registered.text

    async with gateway_process(DESCRIPTORS, grpc_target, port, tmp_path):
        before_raw = (await admin.get(f"{base}/openapi.json")).content
        before_doc = json.loads(before_raw)
        [first] = await _poll(admin, name)
        [again] = await _poll(admin, name)
    async with gateway_process(changed, grpc_target, port, tmp_path):
        after_doc = (await admin.get(f"{base}/openapi.json")).json()
        [drifted] = await _poll(admin, name)

    assert first["status"] == "initial"
    assert first["openapiUrl"] == f"{base}/openapi.json"
    assert "previousSnapshotId" not in first and "error" not in first
    assert first["sizeBytes"] == str(len(before_raw))
    assert again["status"] == "unchanged"
    assert again["previousSnapshotId"] == first["snapshotId"]
    assert again["digest"] == first["digest"]
    no_drift: dict[str, list[str]] = {
        f"{change}{kind}": []
        for change in ("added", "removed", "changed")
        for kind in ("Operations", "Schemas")
    }
    assert first["drift"] == no_drift
    assert again["drift"] == no_drift

    assert drifted["status"] == "drifted"
    assert drifted["previousSnapshotId"] == again["snapshotId"]
    assert drifted["digest"] != first["digest"]
    drift = drifted["drift"]
    assert drift == expected_drift(before_doc, after_doc)
    assert drift["addedOperations"] == ["POST /registry/announce"]
    assert drift["removedOperations"] == ["GET /peers"]
    assert any(schema.endswith("RegisteredService") for schema in drift["changedSchemas"])
    assert any(schema.endswith("ListPeersResponse") for schema in drift["removedSchemas"])

    async with app.db.read() as conn:
        rows = (
            await conn.execute(
                sa.select(_snapshots.c.snapshot_id, _snapshots.c.digest, _snapshots.c.document)
                .where(_snapshots.c.service_name == name)
                .order_by(_snapshots.c.fetched_at)
            )
        ).all()
    assert [r.snapshot_id for r in rows] == [
        first["snapshotId"],
        again["snapshotId"],
        drifted["snapshotId"],
    ]
    assert json.loads(rows[2].document) == after_doc


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _answer(status: str, body: bytes, *, headers: str = "", length: bool = True) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        head = f"HTTP/1.1 {status}\r\nConnection: close\r\n{headers}"
        if length:
            head += f"Content-Length: {len(body)}\r\n"
        writer.write(head.encode() + b"\r\n" + body)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    return handle


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(3600)  # accepts, never answers


@contextlib.asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 1)


async def test_documents_that_cannot_be_had_are_that_service_s_error(
    admin: httpx.AsyncClient, app: Application
) -> None:
    own = f"http://127.0.0.1:{app.http_port}"
    cases: dict[str, tuple[Handler | None, str, str]] = {
        "unreachable": (None, "UNREACHABLE", "failed: ConnectError"),
        "http-error": (_answer("503 Service Unavailable", b"down"), "HTTP_ERROR", "answered 503"),
        "huge-declared": (
            _answer("200 OK", b"{" + b" " * (11 * 1024 * 1024) + b"}"),
            "TOO_LARGE",
            "declares 11534338 bytes; the limit is 10485760 bytes",
        ),
        "huge-streamed": (
            _answer("200 OK", b"[" + b"0," * (6 * 1024 * 1024) + b"0]", length=False),
            "TOO_LARGE",
            "is longer; the limit is 10485760 bytes",
        ),
        "not-json": (_answer("200 OK", b"<html>hi</html>"), "NOT_JSON", "is not JSON"),
        "deep-json": (_answer("200 OK", b"[" * 100_000), "NOT_JSON", "nests too deeply"),
        "not-openapi": (_answer("200 OK", b'{"hello": 1}'), "NOT_OPENAPI", "has no `openapi`"),
        "array": (_answer("200 OK", b"[1, 2]"), "NOT_OPENAPI", "is a JSON array, not an object"),
        "no-paths": (_answer("200 OK", b'{"openapi": "3.1.0"}'), "NOT_OPENAPI", "no `paths`"),
        "loop": (
            _answer("302 Found", b"", headers=f"Location: {own}/registry/sync-peers\r\n"),
            "LOOP",
            "would call itself in a loop",
        ),
    }
    prefix = f"bad-{uuid.uuid4().hex[:6]}"
    async with contextlib.AsyncExitStack() as stack:
        for label, (handler, _, _) in cases.items():
            if handler is None:
                # A port bound but not listening: connections are refused, and the
                # kernel cannot hand it to the stub servers the other cases start.
                closed = stack.enter_context(socket.socket())
                closed.bind(("127.0.0.1", 0))
                url = f"http://127.0.0.1:{closed.getsockname()[1]}"
            else:
                url = await stack.enter_async_context(serving(handler))
            body = {"name": f"{prefix}-{label}", "baseUrl": url}
            assert (await admin.post("/registry/register", json=body)).status_code == 201
        names = [f"{prefix}-{label}" for label in cases]
        results = await _poll(admin, *names)
    assert [r["name"] for r in results] == sorted(names)
    for result in results:
        label = result["name"].removeprefix(f"{prefix}-")
        _, code, words = cases[label]
        assert result["status"] == "failed", result
        assert result["error"]["code"] == code, result
        assert words in result["error"]["message"], result
        assert "snapshotId" not in result and "digest" not in result
    async with app.db.read() as conn:
        stored = (
            await conn.execute(
                sa.select(sa.func.count())
                .select_from(_snapshots)
                .where(_snapshots.c.service_name.in_(names))
            )
        ).scalar_one()
    assert stored == 0


async def test_unknown_and_malformed_names(admin: httpx.AsyncClient) -> None:
    missing = await admin.post("/registry/poll-openapi", json={"names": ["no-such-service"]})
    assert missing.status_code == 404
    assert missing.json()["details"][0]["reason"] == "SERVICE_NOT_FOUND"
    assert missing.json()["error"] == "service 'no-such-service' not found"
    bad = await admin.post("/registry/poll-openapi", json={"names": ["ok", "bad name"]})
    assert bad.status_code == 400
    assert bad.json()["error"].startswith("names[1]: must be 1-64 letters")


async def test_a_silent_service_times_out_without_holding_up_other_requests(
    tmp_path: Path, tokens: TokenFactory
) -> None:
    """A service that accepts and never answers costs the poll the fetch timeout (1 s
    here) and nothing else: the server answers other requests meanwhile."""
    settings = settings_for(f"sqlite+aiosqlite:///{tmp_path / 'o.db'}").model_copy(
        update={"registry_fetch_timeout_seconds": 1.0}
    )
    app = Application(settings)
    await app.start()
    try:
        own = TokenFactory(app, f"http://127.0.0.1:{app.http_port}")
        token = await own.token(None, ("orch:admin",))
        headers = {"Authorization": f"Bearer {token}", "X-Stella-Operator-Reason": "slow"}
        async with (
            httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{app.http_port}", headers=headers, timeout=30
            ) as client,
            serving(_silent) as url,
        ):
            body = {"name": "silent", "baseUrl": url}
            assert (await client.post("/registry/register", json=body)).status_code == 201
            started = time.monotonic()
            poll = asyncio.create_task(client.post("/registry/poll-openapi", json={}))
            await asyncio.sleep(0.2)
            listed = await client.get("/registry")
            answered_in = time.monotonic() - started
            response = await poll
            took = time.monotonic() - started
        assert listed.status_code == 200 and answered_in < 0.8
        assert response.status_code == 200
        [result] = response.json()["results"]
        assert result["error"] == {
            "code": "TIMEOUT",
            "message": f"GET {url}/openapi.json took longer than 1 s",
        }
        assert 1.0 <= took < 3.0
    finally:
        await app.stop(grace=1)

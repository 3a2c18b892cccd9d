"""The gateway stands alone (DESIGN.md §2): for a proto with none of the product's
options it routes, calls and documents without importing anything of the product.

Run in a fresh interpreter, since this test process has long imported the server.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

_PROGRAM = r"""
import asyncio, json, sys

import httpx
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2, descriptor_pool

from gateway.app import Gateway
from gateway.bindings import bindings_for
from gateway.inprocess import InProcessUpstream
from gateway.openapi import documents_by_api

F = descriptor_pb2.FieldDescriptorProto
file = descriptor_pb2.FileDescriptorProto(
    name="acme/v1/echo.proto", package="acme.v1", syntax="proto3"
)
message = file.message_type.add(name="Ping")
message.field.add(name="id", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
method = file.service.add(name="Echo").method.add(
    name="Get", input_type=".acme.v1.Ping", output_type=".acme.v1.Ping"
)
method.options.Extensions[annotations_pb2.http].CopyFrom(http_pb2.HttpRule(get="/v1/pings/{id}"))
pool = descriptor_pool.DescriptorPool()
pool.Add(file)
service = pool.FindServiceByName("acme.v1.Echo")


async def main() -> dict[str, object]:
    gateway = Gateway(bindings_for([service]), InProcessUpstream({}))
    transport = httpx.ASGITransport(app=gateway)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        served = await client.get("/openapi/acme.json")
        unimplemented = await client.get("/v1/pings/p1", headers={"X-Stella-Tenant": "t"})
    return {
        "served": served.status_code,
        "paths": sorted(served.json()["paths"]),
        "call": [unimplemented.status_code, unimplemented.json()["code"]],
        "same": served.json() == documents_by_api(bindings_for([service]))["acme"],
    }


result = asyncio.run(main())
result["product"] = sorted(
    name for name in sys.modules if name.split(".")[0] in ("server", "clients", "orchestrator")
)
print(json.dumps(result))
"""


def test_a_gateway_for_a_foreign_proto_imports_nothing_of_the_product() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROGRAM],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "served": 200,
        "paths": ["/v1/pings/{id}"],
        "call": [501, "UNIMPLEMENTED"],
        "same": True,
        "product": [],
    }

"""Root and trailing-slash routes, and verbs where the grammar puts them.

Fault (issue 8, item 6): the template `/` was refused at start-up, a `/**` route did
not match `/a/`, and `/a/{x=var:verb}` was accepted though google/api/http.proto's
grammar has a Verb only after the whole template. Envoy's transcoder and
grpc-gateway serve the first two; the third is refused at start-up, naming the
method and the template.

The echo API has none of these routes, so this file defines its own small API
(`routetest.v1.RouteService`) in a descriptor pool built here, served by the real
Gateway in-process over ASGI, and checks the refusal through `python -m
gateway.standalone`'s start-up with a descriptor set written to disk.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import ServiceDescriptor

from gateway.app import Gateway
from gateway.bindings import BindingError, bindings_for
from gateway.inprocess import InProcessUpstream

ROOT = Path(__file__).resolve().parents[2]
SERVICE = "routetest.v1.RouteService"

# (method, HTTP method, template, body)
ROUTES = [
    ("Root", "get", "/", ""),
    ("CreateAtRoot", "post", "/", "*"),
    ("Deep", "get", "/{path=**}", ""),
    ("Static", "get", "/static/**", ""),
    ("Item", "get", "/items/{name}", ""),
]


def _file(routes: list[tuple[str, str, str, str]], name: str) -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(
        name=f"routetest/v1/{name}.proto",
        package="routetest.v1",
        syntax="proto3",
        dependency=["google/api/annotations.proto"],
    )
    where = file.message_type.add(name="Where")
    for number, field in enumerate(("path", "name", "method"), start=1):
        where.field.add(
            name=field,
            number=number,
            type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
            label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
        )
    service = file.service.add(name="RouteService")
    for method_name, verb, template, body in routes:
        method = service.method.add(
            name=method_name, input_type=".routetest.v1.Where", output_type=".routetest.v1.Where"
        )
        rule = http_pb2.HttpRule(body=body)
        setattr(rule, verb, template)
        method.options.Extensions[annotations_pb2.http].CopyFrom(rule)
    return file


def _dependencies() -> list[descriptor_pb2.FileDescriptorProto]:
    files = []
    for module in (descriptor_pb2, http_pb2, annotations_pb2):
        proto = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(proto)
        files.append(proto)
    return files


def _service(routes: list[tuple[str, str, str, str]], name: str) -> ServiceDescriptor:
    pool = descriptor_pool.DescriptorPool()
    for proto in [*_dependencies(), _file(routes, name)]:
        pool.Add(proto)
    return pool.FindServiceByName(SERVICE)


def _handlers(service: ServiceDescriptor) -> dict[str, grpc.RpcMethodHandler]:
    """Each method answers its request with `method` set to its own name."""
    where = message_factory.GetMessageClass(service.file.message_types_by_name["Where"])

    def answer(method: str) -> Any:
        async def behaviour(request: Any, context: Any) -> Any:
            return where(path=request.path, name=request.name, method=method)

        return behaviour

    return {
        f"/{SERVICE}/{method.name}": grpc.unary_unary_rpc_method_handler(
            answer(method.name),
            request_deserializer=where.FromString,
            response_serializer=where.SerializeToString,
        )
        for method in service.methods
    }


@pytest.fixture(scope="module")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    service = _service(ROUTES, "routes")
    gateway = Gateway(bindings_for([service]), InProcessUpstream(_handlers(service)))
    transport = httpx.ASGITransport(app=gateway)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
        yield http


def _where(method: str, path: str = "", name: str = "") -> dict[str, str]:
    return {"path": path, "name": name, "method": method}


async def test_the_root_template_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert (response.status_code, response.json()) == (200, _where("Root"))
    response = await client.get("/?name=n")
    assert (response.status_code, response.json()) == (200, _where("Root", name="n"))


async def test_the_root_template_takes_a_body(client: httpx.AsyncClient) -> None:
    response = await client.post("/", json={"name": "new"})
    assert (response.status_code, response.json()) == (200, _where("CreateAtRoot", name="new"))


async def test_other_methods_at_the_root_are_405(client: httpx.AsyncClient) -> None:
    response = await client.delete("/")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD, POST"


@pytest.mark.parametrize(
    ("path", "captured"),
    [
        ("/a/", "a/"),  # the fault: 404 before
        ("/a", "a"),
        ("/a/b/", "a/b/"),
        ("/items/x/", "items/x/"),  # `{name}` does not take it; `{path=**}` does
        ("/a%2Fb/", "a%2Fb/"),
    ],
)
async def test_a_deep_wildcard_takes_a_trailing_slash(
    client: httpx.AsyncClient, path: str, captured: str
) -> None:
    response = await client.get(path)
    assert (response.status_code, response.json()) == (200, _where("Deep", path=captured))


async def test_a_deep_wildcard_without_a_variable_takes_it_too(client: httpx.AsyncClient) -> None:
    for path in ("/static/a/", "/static/", "/static"):
        response = await client.get(path)
        assert (response.status_code, response.json()) == (200, _where("Static")), path


async def test_a_single_segment_route_keeps_its_shape(client: httpx.AsyncClient) -> None:
    response = await client.get("/items/x")
    assert (response.status_code, response.json()) == (200, _where("Item", name="x"))


async def test_inner_empty_segments_still_match_nothing(client: httpx.AsyncClient) -> None:
    for path in ("/a//b", "/a//"):
        response = await client.get(path)
        assert response.status_code == 404, path


@pytest.mark.parametrize(
    ("template", "position"),
    [("/a/{x=var:verb}", 9), ("/v1/{name=a:b}/c", 11), ("/a/{x=**:verb}", 8)],
)
def test_a_verb_inside_a_variable_is_refused_at_start_up(template: str, position: int) -> None:
    service = _service([("Bad", "get", template, "")], f"bad{position}")
    with pytest.raises(BindingError) as caught:
        list(bindings_for([service]))
    assert str(caught.value) == (
        f"{SERVICE}.Bad ({template}): invalid path template {template!r}: "
        f"a verb (':') may only end the template, not a variable (at {position})"
    )


def test_the_standalone_gateway_refuses_it_at_start_up(tmp_path: Path) -> None:
    files = descriptor_pb2.FileDescriptorSet(
        file=[*_dependencies(), _file([("Bad", "get", "/a/{x=var:verb}", "")], "startup")]
    )
    descriptor_set = tmp_path / "routes.binpb"
    descriptor_set.write_bytes(files.SerializeToString())
    done = subprocess.run(
        [sys.executable, "-m", "gateway.standalone", "--descriptor-set", str(descriptor_set),
         "--upstream", "127.0.0.1:9", "--port", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr == (
        f"gateway: {SERVICE}.Bad (/a/{{x=var:verb}}): invalid path template "
        "'/a/{x=var:verb}': a verb (':') may only end the template, not a variable (at 9)\n"
    )


def test_the_standalone_gateway_starts_with_a_root_template(tmp_path: Path) -> None:
    files = descriptor_pb2.FileDescriptorSet(file=[*_dependencies(), _file(ROUTES, "standalone")])
    descriptor_set = tmp_path / "routes.binpb"
    descriptor_set.write_bytes(files.SerializeToString())
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.standalone", "--descriptor-set", str(descriptor_set),
         "--upstream", "127.0.0.1:9", "--port", "0"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = iter(proc.stdout.readline, "")
        started = next((line for line in lines if "gateway on 127.0.0.1:" in line), None)
        assert started is not None
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()

"""Compile the test-only protos under tests/protos at test time.

They stand for "somebody else's API": nothing under proto/ may depend on them and
their generated code is never committed.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import google.api
import grpc_tools
from grpc_tools import protoc

PROTO_ROOT = Path(__file__).resolve().parent.parent / "protos"
# The gateway's own options (gateway/v1/http.proto), which any API may import; their
# generated code is the committed gateway/v1 package, so only the test protos are
# generated here.
_GATEWAY_PROTO_ROOT = Path(__file__).resolve().parents[2] / "proto"
_GOOGLE_ROOT = Path(google.api.__path__[0]).parent.parent
_WKT_ROOT = Path(grpc_tools.__file__).parent / "_proto"


@functools.cache
def compiled_root() -> Path:
    """Generate Python and a descriptor set once per process; return the output dir."""
    out = Path(tempfile.mkdtemp(prefix="gwtest-"))
    sources = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{_GATEWAY_PROTO_ROOT}",
        f"-I{_GOOGLE_ROOT}",
        f"-I{_WKT_ROOT}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        "--include_imports",
        f"--descriptor_set_out={out / 'descriptor_set.binpb'}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed for {sources}")
    for directory, _, _ in os.walk(out):
        Path(directory, "__init__.py").touch()
    sys.path.insert(0, str(out))
    return out


def descriptor_set_path() -> Path:
    """The serialized FileDescriptorSet, as `protoc --include_imports` writes it."""
    return compiled_root() / "descriptor_set.binpb"


def echo_pb2() -> ModuleType:
    compiled_root()
    return importlib.import_module("gwtest.v1.echo_pb2")


def echo_pb2_grpc() -> ModuleType:
    compiled_root()
    return importlib.import_module("gwtest.v1.echo_pb2_grpc")

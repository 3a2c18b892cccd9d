"""Proxy mode: serve the HttpRule bindings of a FileDescriptorSet in front of any gRPC
server, the way Envoy's transcoder is configured (`--descriptor-set`, `--upstream`).

The descriptors get their own pool, so the gateway sees exactly the API in the file
(as `protoc --include_imports --descriptor_set_out` writes it) and nothing of ours.

`add_arguments` defines the command line (a product's own command may use it too,
passing its header names, OpenAPI security and CORS headers to `serve_arguments`);
`python -m gateway.standalone --descriptor-set FILE --upstream HOST:PORT` runs the
proxy with product-neutral defaults. `--trust-forwarded-headers` is for a gateway
behind a proxy that overwrites X-Forwarded-Proto/-Host/-For (gateway/metadata.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import uvicorn
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import DecodeError
from starlette.types import ASGIApp

from gateway.app import Gateway, GatewayConfig
from gateway.bindings import BindingError, bindings_for
from gateway.cors import CorsRules, with_cors
from gateway.openapi_schema import comments_from_files
from gateway.upstream import ChannelUpstream

log = logging.getLogger("gateway")


class DescriptorSetError(ValueError):
    """The descriptor set file cannot be read or does not form a consistent pool."""


def read_descriptor_set(path: Path) -> descriptor_pb2.FileDescriptorSet:
    try:
        return descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes())
    except (OSError, DecodeError) as exc:
        raise DescriptorSetError(f"cannot read descriptor set {path}: {exc}") from exc


def load_services(path: Path) -> list[ServiceDescriptor]:
    files = read_descriptor_set(path)
    pool = descriptor_pool.DescriptorPool()
    try:
        for file in files.file:  # --include_imports writes dependencies first
            pool.Add(file)
        return [
            service
            for file in files.file
            for service in pool.FindFileByName(file.name).services_by_name.values()
        ]
    except (TypeError, KeyError, ValueError) as exc:
        raise DescriptorSetError(f"inconsistent descriptor set {path}: {exc}") from exc


def build_proxy(
    services: Sequence[ServiceDescriptor],
    upstream: str,
    *,
    config: GatewayConfig | None = None,
    cors: CorsRules | None = None,
) -> tuple[Gateway, ASGIApp]:
    gateway = Gateway(bindings_for(services), ChannelUpstream(upstream), config)
    return gateway, with_cors(gateway, cors)


class _Server(uvicorn.Server):
    """uvicorn minus its signal capture; `serve_proxy` owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_proxy(
    descriptor_set: Path,
    upstream: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    cors: CorsRules | None = None,
    trust_forwarded_headers: bool = False,
    config: GatewayConfig | None = None,
) -> int:
    """Serve until SIGTERM/SIGINT. `config` is the base configuration (neutral when
    None); the trust flag and the descriptor set's comments are set on it."""
    services = load_services(descriptor_set)
    config = replace(
        config or GatewayConfig(),
        trust_forwarded_headers=trust_forwarded_headers,
        comments=comments_from_files(read_descriptor_set(descriptor_set).file),
    )
    gateway, app = build_proxy(services, upstream, config=config, cors=cors)
    server = _Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="off",
            # The gateway reads forwarding headers itself, by its own rule
            # (gateway/metadata.py); uvicorn's would rewrite the peer and scheme first.
            proxy_headers=False,
        )
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
    task = asyncio.create_task(server.serve())
    for _ in range(3000):  # uvicorn has no start-up event to await; poll for 30 s at most
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    if server.started:
        bound = server.servers[0].sockets[0].getsockname()
        log.info(
            "gateway on %s:%d -> %s (%d bindings)",
            bound[0],
            bound[1],
            upstream,
            len(gateway.bindings),
        )
    await task
    await gateway.upstream.close()
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The proxy's options, for this module's `main` and a product's own command."""
    parser.add_argument("--descriptor-set", required=True, type=Path, help="FileDescriptorSet file")
    parser.add_argument("--upstream", required=True, help="HOST:PORT of the gRPC server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--cors-origins", default="", help="comma-separated allowed origins")
    parser.add_argument(
        "--trust-forwarded-headers",
        action="store_true",
        help="keep X-Forwarded-Proto/-Host and extend X-Forwarded-For from the proxy in "
        "front (only behind a proxy that overwrites them)",
    )


async def serve_arguments(
    args: argparse.Namespace,
    *,
    config: GatewayConfig | None = None,
    cors: CorsRules | None = None,
) -> int:
    """Serve as the command line says; `config` and `cors` are a product's own base
    configuration (header names, OpenAPI security, CORS headers), neutral when None.
    `--cors-origins` sets the origins of `cors`."""
    origins = CorsRules.parse(args.cors_origins).origins
    return await serve_proxy(
        args.descriptor_set,
        args.upstream,
        host=args.host,
        port=args.port,
        cors=replace(cors or CorsRules(), origins=origins),
        trust_forwarded_headers=args.trust_forwarded_headers,
        config=config,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.standalone", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    try:
        return asyncio.run(serve_arguments(args))
    except (DescriptorSetError, BindingError) as exc:
        sys.stderr.write(f"gateway: {exc}\n")
        return 2


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())

"""Gateway benchmarks (issue 3 §12), all in one run on this machine.

(a) REST GET of one source through the in-process gateway vs the same RPC over gRPC
    from a Python client (throughput, 50 in flight);
(b) added latency of the proxy (`orchestrator gateway`) vs direct gRPC, and vs the
    in-process gateway (sequential requests, p50/p99);
(c) the in-process gateway vs a hand-written Starlette endpoint doing the same storage
    read and JSON encoding (throughput, 50 in flight) — target >= 0.9x;
(d) route lookup with 10 vs 1,000 registered routes — target <= 1.2x.

HTTP load comes from wrk (Debian package `wrk`) in its own process, so the Python
client does not cap the servers; without wrk the script says so and stops.

    .venv/bin/python bench/gateway.py [--seconds 5]
"""

from __future__ import annotations

import sys
from pathlib import Path

# This script is named like the package it measures; keep its folder off the path
# so `import gateway` finds the package, then load the seeding helper by file.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import argparse
import asyncio
import importlib.util
import os
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import time

import grpc
import httpx

from gateway.router import Router
from gateway.template import parse_template
from orchestrator.jobengine.v1 import sources_service_pb2 as pb
from orchestrator.jobengine.v1 import sources_service_pb2_grpc as pb_grpc

_spec = importlib.util.spec_from_file_location("bench_sources", _HERE / "sources.py")
assert _spec is not None and _spec.loader is not None
_sources = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_sources)
TENANT: str = _sources.TENANT
seed = _sources.seed

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, headers: dict[str, str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(url, headers=headers, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def spawn(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args, cwd=ROOT, env={**os.environ, "LOG_LEVEL": "WARNING", **(env or {})}
    )


def wrk(url: str, *, seconds: int, connections: int, headers: dict[str, str]) -> dict[str, float]:
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise RuntimeError(f"{url}: {non2xx.group(1)} failed responses\n{out}")
    return {"rps": rps, "p50": _wrk_ms(out, "50%"), "p99": _wrk_ms(out, "99%")}


def _wrk_ms(out: str, pct: str) -> float:
    value, unit = re.search(rf"{pct}\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


async def grpc_throughput(target: str, source_id: str, seconds: float) -> float:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.SourcesServiceStub(channel)
        metadata = (("x-stella-tenant", TENANT),)
        request = pb.GetSourceRequest(source_id=source_id)
        done = 0
        stop = time.monotonic() + seconds

        async def worker() -> None:
            nonlocal done
            while time.monotonic() < stop:
                await stub.GetSource(request, metadata=metadata)
                done += 1

        start = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(50)))
        return done / (time.monotonic() - start)


def grpc_latency(target: str, source_id: str, count: int) -> tuple[float, float]:
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.SourcesServiceStub(channel)
        metadata = (("x-stella-tenant", TENANT),)
        request = pb.GetSourceRequest(source_id=source_id)
        samples = []
        for _ in range(count):
            start = time.perf_counter()
            stub.GetSource(request, metadata=metadata)
            samples.append((time.perf_counter() - start) * 1000)
    cuts = statistics.quantiles(samples[count // 10 :], n=100)
    return cuts[49], cuts[98]


def route_lookup_ratio() -> tuple[float, float, float]:
    """ns per match with 10 and 1,000 routes; the probed paths exist in both tables."""

    def table(count: int) -> Router[int]:
        router: Router[int] = Router()
        for i in range(count):
            router.add("GET", parse_template(f"/v1/res{i}/{{id}}"), i)
            router.add("POST", parse_template(f"/v1/res{i}/{{id}}:run"), i)
        return router

    paths = [f"/v1/res{i}/abc" for i in range(5)] + ["/v1/res3/abc:run"]
    methods = ["GET"] * 5 + ["POST"]

    def once(router: Router[int]) -> float:
        start = time.perf_counter_ns()
        for _ in range(2000):
            for method, path in zip(methods, paths, strict=True):
                router.match(method, path)
        return (time.perf_counter_ns() - start) / (2000 * len(paths))

    # Interleave the two tables and keep each one's best round, so background load
    # hits both alike instead of skewing the ratio.
    tables = {10: table(5), 1000: table(500)}
    best = {size: float("inf") for size in tables}
    for _ in range(9):
        for size, router in tables.items():
            best[size] = min(best[size], once(router))
    small, large = best[10], best[1000]
    return small, large, large / small


async def run(seconds: int) -> None:
    if shutil.which("wrk") is None:
        sys.exit("bench/gateway.py needs wrk: apt-get install wrk")
    workdir = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    db_url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
    await seed(db_url, 10_000)
    http_port, grpc_port, proxy_port, hand_port = (free_port() for _ in range(4))
    headers = {"X-Stella-Tenant": TENANT}
    procs = [
        spawn(
            [str(BIN / "orchestrator"), "serve"],
            {
                "ORCHESTRATOR_DATABASE_URL": db_url,
                "PORT": str(http_port),
                "GRPC_PORT": str(grpc_port),
            },
        ),
        spawn(
            [
                sys.executable,
                "bench/handwritten.py",
                "--database-url",
                db_url,
                "--port",
                str(hand_port),
            ]
        ),
    ]
    try:
        wait_http(f"http://127.0.0.1:{http_port}/jobengine/sources?limit=1", headers)
        procs.append(
            spawn(
                [
                    str(BIN / "orchestrator"), "gateway", "--descriptor-set",
                    "gen/orchestrator/descriptor_set.binpb", "--upstream", f"127.0.0.1:{grpc_port}",
                    "--port", str(proxy_port),
                ]
            )
        )  # fmt: skip
        async with httpx.AsyncClient() as client:
            first = await client.get(
                f"http://127.0.0.1:{http_port}/jobengine/sources?limit=1", headers=headers
            )
        source_id = first.json()["items"][0]["sourceId"]
        inproc = f"http://127.0.0.1:{http_port}/jobengine/sources/{source_id}"
        proxy = f"http://127.0.0.1:{proxy_port}/jobengine/sources/{source_id}"
        hand = f"http://127.0.0.1:{hand_port}/sources/{source_id}"
        for url in (proxy, hand):
            wait_http(url, headers)
        for url in (inproc, proxy, hand):  # warm-up
            wrk(url, seconds=1, connections=10, headers=headers)

        print("(a) one source: REST through the in-process gateway vs gRPC from Python")
        rest = wrk(inproc, seconds=seconds, connections=50, headers=headers)
        grpc_rps = await grpc_throughput(f"127.0.0.1:{grpc_port}", source_id, seconds)
        print(f"    REST {rest['rps']:7.0f} req/s   gRPC {grpc_rps:7.0f} req/s   "
              f"ratio {rest['rps'] / grpc_rps:.2f}")  # fmt: skip

        print("(b) added latency, sequential requests (p50 / p99 ms)")
        direct = grpc_latency(f"127.0.0.1:{grpc_port}", source_id, 2000)
        via_proxy = wrk(proxy, seconds=seconds, connections=1, headers=headers)
        via_inproc = wrk(inproc, seconds=seconds, connections=1, headers=headers)
        print(f"    direct gRPC      {direct[0]:6.2f} / {direct[1]:6.2f}")
        print(f"    REST in-process  {via_inproc['p50']:6.2f} / {via_inproc['p99']:6.2f}")
        print(f"    REST via proxy   {via_proxy['p50']:6.2f} / {via_proxy['p99']:6.2f}")
        over_grpc = via_proxy["p50"] - direct[0]
        over_inproc = via_proxy["p50"] - via_inproc["p50"]
        print(f"    proxy adds {over_grpc:+.2f} ms p50 over direct gRPC (target <= 1 ms), "
              f"{over_inproc:+.2f} ms over the in-process gateway")  # fmt: skip

        print("(c) in-process gateway vs hand-written Starlette endpoint (50 in flight)")
        gw = wrk(inproc, seconds=seconds, connections=50, headers=headers)
        hw = wrk(hand, seconds=seconds, connections=50, headers=headers)
        print(f"    gateway {gw['rps']:7.0f} req/s (p50 {gw['p50']:.2f} ms)   "
              f"hand-written {hw['rps']:7.0f} req/s (p50 {hw['p50']:.2f} ms)   "
              f"ratio {gw['rps'] / hw['rps']:.2f} (target >= 0.90)")  # fmt: skip
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)

    small, large, ratio = route_lookup_ratio()
    print("(d) route lookup")
    print(f"    10 routes {small:6.0f} ns   1,000 routes {large:6.0f} ns", end="   ")
    print(f"ratio {ratio:.2f} (target <= 1.20)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5)
    asyncio.run(run(parser.parse_args().seconds))


if __name__ == "__main__":
    main()

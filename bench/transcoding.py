"""Transcoding gateway benchmarks (issue 3 §12), all in one run on this machine.

(a) REST GET of one source through the in-process gateway vs the same RPC over gRPC
    from a Python client (throughput, 50 in flight);
(b) added latency of the proxy (`orchestrator gateway`) vs direct gRPC, and vs the
    in-process gateway (sequential requests, p50/p99);
(c) the in-process gateway vs a hand-written Starlette endpoint doing the same token
    check, storage read and JSON encoding (throughput, 50 in flight, alternating
    short runs; the median of the paired ratios) — target >= 0.9x. The endpoint runs
    on Python's garbage-collector defaults, the server on its own setting
    (server/garbage_collection.py); (c') repeats (c) with the endpoint given the
    server's setting too, so the two differ by the gateway and the chain alone;
(d) route lookup with 10 vs 1,000 registered routes — target <= 1.2x.

Every REST and gRPC request carries `Authorization: Bearer <token>` of an OAuth client
bound to the bench tenant (from POST /oauth/token), as production calls do; the
hand-written endpoint verifies it with the same `TokenVerifier.verify` call.

HTTP load comes from wrk (Debian package `wrk`) in its own process, so the Python
client does not cap the servers; without wrk the script says so and stops.

    .venv/bin/python bench/transcoding.py [--seconds 5] [--rounds 6]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import httpx

from gateway.router import Router
from gateway.template import parse_template
from orchestrator.jobengine.v1 import sources_service_pb2 as pb
from orchestrator.jobengine.v1 import sources_service_pb2_grpc as pb_grpc
from server.config import Settings
from server.identity.authorization_server import clients
from server.storage.db import Database
from server.storage.tables import TenantRow

# The seeding helper, loaded by file: bench/ is a folder of scripts, not a package.
_HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("bench_sources", _HERE / "sources.py")
assert _spec is not None and _spec.loader is not None
_sources = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_sources)
TENANT: str = _sources.TENANT
seed = _sources.seed

ROOT = Path(__file__).resolve().parent.parent
# What `orchestrator serve` sets unless ORCHESTRATOR_GC_GEN0_THRESHOLD says otherwise.
GC_GEN0_THRESHOLD: int = Settings.model_fields["gc_gen0_threshold"].default
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


def paired_rounds(
    first: str, second: str, *, rounds: int, seconds: int, headers: dict[str, str]
) -> tuple[dict[str, float], dict[str, float], list[float]]:
    """Throughput of two endpoints measured in alternating short runs (ABBA order), so
    load from elsewhere on this 2-core machine hits both alike: the mean of each
    side's figures, and the per-round ratios first/second."""
    runs: dict[str, list[dict[str, float]]] = {first: [], second: []}
    for index in range(rounds):
        order = (first, second) if index % 2 == 0 else (second, first)
        for url in order:
            runs[url].append(wrk(url, seconds=seconds, connections=50, headers=headers))
    ratios = [a["rps"] / b["rps"] for a, b in zip(runs[first], runs[second], strict=True)]

    def mean(results: list[dict[str, float]]) -> dict[str, float]:
        return {key: statistics.fmean(r[key] for r in results) for key in results[0]}

    return mean(runs[first]), mean(runs[second]), ratios


def compare(
    gateway: str,
    hand: str,
    *,
    rounds: int,
    seconds: int,
    headers: dict[str, str],
    target: float | None,
) -> None:
    """Print (c)'s figures for the gateway URL against a hand-written endpoint's."""
    gw, hw, ratios = paired_rounds(gateway, hand, rounds=rounds, seconds=seconds, headers=headers)
    print(
        f"    gateway {gw['rps']:7.0f} req/s (p50 {gw['p50']:.2f} ms)   "
        f"hand-written {hw['rps']:7.0f} req/s (p50 {hw['p50']:.2f} ms)"
    )
    wanted = f"; target >= {target:.2f}" if target is not None else ""
    print(f"    ratio {statistics.median(ratios):.2f} (median of {len(ratios)} paired rounds: "
          f"{' '.join(f'{r:.2f}' for r in ratios)}{wanted})")  # fmt: skip


def _wrk_ms(out: str, pct: str) -> float:
    value, unit = re.search(rf"{pct}\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


async def bench_client(db_url: str) -> tuple[str, str]:
    """An OAuth client bound to the bench tenant: (client_id, client_secret)."""
    db = Database(db_url)
    try:
        async with db.transaction() as session:
            if await session.get(TenantRow, TENANT) is None:
                session.add(TenantRow(tenant_id=TENANT, display_name=TENANT))
        created = await clients.create_client(
            db, scopes=["orch:read", "orch:operate"], tenant=TENANT
        )
    finally:
        await db.dispose()
    return created.client.client_id, created.client_secret


async def access_token(base: str, client_id: str, client_secret: str) -> str:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        response = await client.post(
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": client_secret,
            },
        )
    if response.status_code != 200:
        raise RuntimeError(f"token request failed: {response.status_code} {response.text}")
    token: str = response.json()["access_token"]
    return token


def grpc_metadata(headers: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple((name.lower(), value) for name, value in headers.items())


async def grpc_throughput(
    target: str, source_id: str, seconds: float, headers: dict[str, str]
) -> float:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.SourcesServiceStub(channel)
        metadata = grpc_metadata(headers)
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


def grpc_latency(
    target: str, source_id: str, count: int, headers: dict[str, str]
) -> tuple[float, float]:
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.SourcesServiceStub(channel)
        metadata = grpc_metadata(headers)
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


async def run(seconds: int, rounds: int) -> None:
    if shutil.which("wrk") is None:
        sys.exit("bench/transcoding.py needs wrk: apt-get install wrk")
    workdir = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    db_url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
    await seed(db_url, 10_000)
    client_id, client_secret = await bench_client(db_url)
    http_port, grpc_port, proxy_port, hand_port = (free_port() for _ in range(4))
    base = f"http://127.0.0.1:{http_port}"
    procs = [
        spawn(
            [str(BIN / "orchestrator"), "serve"],
            {
                "ORCHESTRATOR_DATABASE_URL": db_url,
                "ORCHESTRATOR_PUBLIC_URL": base,
                "PORT": str(http_port),
                "GRPC_PORT": str(grpc_port),
            },
        ),
    ]
    try:
        wait_http(f"{base}/.well-known/jwks.json", {})
        token = await access_token(base, client_id, client_secret)
        headers = {"X-Stella-Tenant": TENANT, "Authorization": f"Bearer {token}"}
        procs.append(
            spawn(
                [
                    sys.executable, "bench/handwritten.py", "--database-url", db_url,
                    "--public-url", base, "--port", str(hand_port),
                ]
            )
        )  # fmt: skip
        tuned_port = free_port()
        procs.append(
            spawn(
                [
                    sys.executable, "bench/handwritten.py", "--database-url", db_url,
                    "--public-url", base, "--port", str(tuned_port),
                    "--gc-gen0-threshold", str(GC_GEN0_THRESHOLD),
                ]
            )
        )  # fmt: skip
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
            first = await client.get(f"{base}/jobengine/sources?limit=1", headers=headers)
        if first.status_code != 200:
            raise RuntimeError(f"listing sources failed: {first.status_code} {first.text}")
        source_id = first.json()["items"][0]["sourceId"]
        inproc = f"http://127.0.0.1:{http_port}/jobengine/sources/{source_id}"
        proxy = f"http://127.0.0.1:{proxy_port}/jobengine/sources/{source_id}"
        hand = f"http://127.0.0.1:{hand_port}/sources/{source_id}"
        tuned = f"http://127.0.0.1:{tuned_port}/sources/{source_id}"
        for url in (proxy, hand, tuned):
            wait_http(url, headers)
        for url in (inproc, proxy, hand, tuned):  # warm-up
            wrk(url, seconds=1, connections=10, headers=headers)

        print("(a) one source: REST through the in-process gateway vs gRPC from Python")
        rest = wrk(inproc, seconds=seconds, connections=50, headers=headers)
        grpc_rps = await grpc_throughput(f"127.0.0.1:{grpc_port}", source_id, seconds, headers)
        print(f"    REST {rest['rps']:7.0f} req/s   gRPC {grpc_rps:7.0f} req/s   "
              f"ratio {rest['rps'] / grpc_rps:.2f}")  # fmt: skip

        print("(b) added latency, sequential requests (p50 / p99 ms)")
        direct = grpc_latency(f"127.0.0.1:{grpc_port}", source_id, 2000, headers)
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
        compare(inproc, hand, rounds=rounds, seconds=seconds, headers=headers, target=0.90)
        print("(c') the same, the hand-written endpoint on the server's garbage-collector setting")
        compare(inproc, tuned, rounds=rounds, seconds=seconds, headers=headers, target=None)
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
    parser.add_argument("--rounds", type=int, default=6, help="paired runs in (c), --seconds each")
    args = parser.parse_args()
    asyncio.run(run(args.seconds, args.rounds))


if __name__ == "__main__":
    main()

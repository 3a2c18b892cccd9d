"""`orchestrator serve` sets the cyclic garbage collector once start-up is done
(server/garbage_collection.py): what start-up built is frozen, and the youngest
generation collects after ORCHESTRATOR_GC_GEN0_THRESHOLD net container allocations.
Read from the outside: the start-up log line and the server's own
`python_gc_collections_total` counter on /metrics, across real HTTP requests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ORCHESTRATOR = str(Path(sys.executable).with_name("orchestrator"))
_SERVING = re.compile(r"HTTP on 127\.0\.0\.1:(\d+)")
_TUNED = re.compile(r"garbage collector: (\d+) start-up objects frozen, gen0 threshold (\d+)")
_GEN0 = re.compile(r'^python_gc_collections_total\{generation="0"\} ([0-9.e+]+)$', re.M)


class Served:
    def __init__(self, port: int, lines: list[str]) -> None:
        self.port = port
        self.lines = lines

    def tuned(self) -> tuple[int, int]:
        """(objects frozen, gen0 threshold) from the start-up line."""
        for line in self.lines:
            if match := _TUNED.search(line):
                return int(match.group(1)), int(match.group(2))
        raise AssertionError("no garbage collector line:\n" + "".join(self.lines))


def _serve(tmp_path: Path, threshold: str | None) -> Iterator[Served]:
    env = {
        **os.environ,
        "ORCHESTRATOR_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'gc.db'}",
        "PORT": "0",
        "GRPC_PORT": "0",
        "LOG_LEVEL": "INFO",
        "ORCHESTRATOR_CONFIG_FILE": os.devnull,
    }
    env.pop("ORCHESTRATOR_GC_GEN0_THRESHOLD", None)
    if threshold is not None:
        env["ORCHESTRATOR_GC_GEN0_THRESHOLD"] = threshold
    proc = subprocess.Popen(
        [ORCHESTRATOR, "serve"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    port = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(_TUNED.search(line) for line in lines):
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if match := _SERVING.search(line):
            port = int(match.group(1))
    try:
        assert port is not None, "".join(lines)
        yield Served(port, lines)
    finally:
        proc.terminate()
        proc.wait(30)
        proc.stdout.close()


@pytest.fixture
def default_server(tmp_path: Path) -> Iterator[Served]:
    yield from _serve(tmp_path, None)


def _gen0_collections_over(served: Served, requests: int) -> float:
    with httpx.Client(base_url=f"http://127.0.0.1:{served.port}", timeout=10) as http:

        def gen0() -> float:
            match = _GEN0.search(http.get("/metrics").text)
            assert match is not None
            return float(match.group(1))

        before = gen0()
        for _ in range(requests):
            assert http.get("/health").status_code == 200
        return gen0() - before


def test_the_default_freezes_start_up_and_sets_gen0_to_10000(default_server: Served) -> None:
    frozen, threshold = default_server.tuned()
    assert threshold == 10_000
    assert frozen > 50_000  # descriptors, SQLAlchemy metadata, routes: ~200,000 here


@pytest.mark.parametrize(("threshold", "collects"), [("700", True), ("1000000", False)])
def test_the_configured_threshold_decides_how_often_gen0_collects(
    tmp_path: Path, threshold: str, collects: bool
) -> None:
    """500 requests leave enough net allocations behind for Python's own 700 to
    collect several times; a threshold of 1,000,000 is not reached."""
    for served in _serve(tmp_path, threshold):
        assert served.tuned()[1] == int(threshold)
        collections = _gen0_collections_over(served, 500)
        if collects:
            assert collections >= 2
        else:
            assert collections == 0

"""A worker for the ingestion jobs, so `make serve` plus this runs a workflow to the end.

    .venv/bin/python examples/ingest_worker.py --client-id ID --client-secret S

It has the flags and environment variables of examples/worker.py (it reuses its
parser: --target, --token-url, --client-id, --client-secret, --tenant, --concurrency,
--work-seconds, --fail-with, --non-retryable, --lease-duration, --grace-period and
the ORCHESTRATOR_* variables), and leases, unless `--job-type` names others, every
job type of the mesh API's ingestion (issue 13): `ingest.github`, `ingest.jira`,
`ingest.confluence`, `ingest.swagger` (from `POST /ingest` and from the shipped
`multi_source_ingestion` workflow's parallel service tasks) and
`analysis.consistency` (the workflow's last task).

It talks to no real agent. An ingestion answers a small, plausible result derived
from the source and scope (the same input gives the same counts), under one key per
source, `ingest_<source>`, so the four results of a workflow run sit side by side in
its variables; the analysis reads them from its payload (the run's variables) and
answers `{"analysis": {...}}` with their totals. Exit status as examples/worker.py.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
import zlib
from collections.abc import Mapping, Sequence
from importlib import util
from pathlib import Path
from types import ModuleType
from typing import Any

from clients.auth import ClientCredentials
from clients.base import CallerHeaders
from clients.errors import ApiError
from clients.worker import Handler, JobFailed, LeasedJob, Worker


def _example_worker() -> ModuleType:
    """examples/worker.py (not a package: loaded from its file), for its option parser."""
    spec = util.spec_from_file_location("examples_worker", Path(__file__).with_name("worker.py"))
    assert spec is not None and spec.loader is not None
    module = util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


base = _example_worker()

SOURCES = ("github", "jira", "confluence", "swagger")
ANALYSIS_JOB_TYPE = "analysis.consistency"
JOB_TYPES = (*(f"ingest.{source}" for source in SOURCES), ANALYSIS_JOB_TYPE)
# What one ingestion of each source brings in (a plausible unit per agent).
_UNITS = {
    "github": "pull_requests",
    "jira": "issues",
    "confluence": "pages",
    "swagger": "operations",
}

logger = logging.getLogger("examples.ingest_worker")


DESCRIPTION = (
    "Run the example worker of the mesh API's ingestion: it answers ingest.<source> jobs "
    "with small stable counts and analysis.consistency with their totals, so a workflow "
    "run of `make serve` ends completed (see the module docstring)."
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """examples/worker.py's options; without --job-type, every ingestion job type."""
    parser: argparse.ArgumentParser = base.build_parser(
        description=DESCRIPTION,
        job_type_required=False,
        job_type_help=(
            f"job type to lease; repeat for several (default: all of {', '.join(JOB_TYPES)})"
        ),
    )
    args: argparse.Namespace = base.check_args(parser, parser.parse_args(argv))
    if not args.job_types:
        args.job_types = list(JOB_TYPES)
    return args


def _count(*parts: str, low: int, high: int) -> int:
    """A stable number in [low, high] for these inputs (CRC-32: same input, same count)."""
    return low + zlib.crc32("\x1f".join(parts).encode()) % (high - low + 1)


def ingest_result(source: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """The result of one ingestion: `{"ingest_<source>": {source, scope, documents,
    <unit>, correlation_id}}`."""
    scope = str(payload.get("scope") or "")
    documents = _count(source, scope, low=5, high=120)
    return {
        f"ingest_{source}": {
            "source": source,
            "scope": scope,
            "documents": documents,
            _UNITS[source]: _count(source, scope, "units", low=1, high=documents),
            "correlation_id": str(payload.get("correlation_id") or ""),
        }
    }


def analysis_result(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The consistency analysis over the ingestions in `payload` (a run's variables):
    how many documents each source brought and how many findings they produced."""
    ingested = {
        source: payload[f"ingest_{source}"]
        for source in SOURCES
        if isinstance(payload.get(f"ingest_{source}"), Mapping)
    }
    documents = sum(int(item.get("documents", 0)) for item in ingested.values())
    key = ",".join(f"{source}={item.get('documents')}" for source, item in ingested.items())
    findings = _count("findings", key, low=0, high=max(documents // 10, 0))
    return {
        "analysis": {
            "sources": sorted(ingested),
            "documents": documents,
            "findings": findings,
            "consistent": findings == 0,
        }
    }


def make_handler(args: argparse.Namespace) -> Handler:
    failure: JobFailed | None = args.failure
    work_seconds: float = args.work_seconds

    async def handle(job: LeasedJob) -> object:
        if work_seconds > 0:
            await asyncio.sleep(work_seconds)
        if failure is not None:
            raise JobFailed(
                failure.category, failure.code, failure.message, retryable=failure.retryable
            )
        payload = job.payload if isinstance(job.payload, Mapping) else {}
        if job.job_type == ANALYSIS_JOB_TYPE:
            result = analysis_result(payload)
        elif job.job_type.startswith("ingest.") and job.job_type[7:] in _UNITS:
            result = ingest_result(job.job_type[7:], payload)
        else:  # a type named with --job-type that this example does not know
            raise JobFailed(
                "unsupported",
                "UNKNOWN_JOB_TYPE",
                f"examples/ingest_worker.py does not handle {job.job_type!r}",
                retryable=False,
            )
        logger.info("job %s (%s) done: %s", job.job_id, job.job_type, result)
        return result

    return handle


async def run(args: argparse.Namespace) -> int:
    credentials = ClientCredentials(
        token_url=args.token_url,
        client_id=args.client_id,
        client_secret=args.client_secret,
        scopes=[base.WORKER_SCOPE],
    )
    worker_id = f"ingest-example-{socket.gethostname()}-{os.getpid()}"
    worker = Worker.connect(
        args.target,
        job_types=args.job_types,
        handler=make_handler(args),
        credentials=credentials,
        headers=CallerHeaders(tenant=args.tenant),
        worker_id=worker_id,
        concurrency=args.concurrency,
        lease_duration=args.lease_duration,
        grace_period=args.grace_period,
    )
    logger.info("leasing %s as %s from %s", ", ".join(args.job_types), worker_id, args.target)
    try:
        await worker.run(handle_signals=True)
    except ApiError as exc:
        logger.error("the server refused this worker: %s", exc)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())

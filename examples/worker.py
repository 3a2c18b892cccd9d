"""A worker to watch leasing, retries and dead letters without writing one first.

    .venv/bin/python examples/worker.py --client-id ID --client-secret S --job-type T

It leases jobs of the given types from an Orchestrator over gRPC (`make serve`'s
addresses by default), logs each job leased, completed or failed, and answers
`{"jobId", "attempt", "workerId", "payload"}`. `--work-seconds` makes every job take
that long; `--fail-with CATEGORY:CODE` fails every job with that error instead,
retryable (the job is retried after its backoff until its attempts run out, then
dead-lettered) or, with `--non-retryable`, dead-lettered at once. SIGTERM or Ctrl-C
drains: no more leases, running jobs finish (within `--grace-period`), exit 0.

Every option has an environment variable: ORCHESTRATOR_GRPC_TARGET,
ORCHESTRATOR_TOKEN_URL, ORCHESTRATOR_CLIENT_ID, ORCHESTRATOR_CLIENT_SECRET and
ORCHESTRATOR_TENANT (only for an operator client; a client bound to one tenant needs
none). Exit status: 0 after a drain, 1 when the server refuses the worker (bad
credentials, no orch:operate scope), 2 for bad options.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import socket
import sys
from collections.abc import Callable, Sequence
from typing import Any

from clients.auth import ClientCredentials
from clients.base import CallerHeaders
from clients.errors import ApiError
from clients.worker import Handler, JobFailed, LeasedJob, Worker

DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_TOKEN_URL = "http://127.0.0.1:5099/oauth/token"
WORKER_SCOPE = "orch:operate"

logger = logging.getLogger("examples.worker")


def _number(
    kind: Callable[[str], float], low: float, high: float = math.inf
) -> Callable[[str], Any]:
    """An argparse type: a finite `kind` from `low` to `high`; anything else is a usage
    error (exit status 2) naming the option, not a traceback from the worker SDK."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not (math.isfinite(value) and low <= value <= high):
            bound = f"from {low:g} to {high:g}" if math.isfinite(high) else f"at least {low:g}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text!r}")
        return value

    return parse


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    return check_args(parser, parser.parse_args(argv))


def build_parser(
    *,
    description: str = "Run an example Orchestrator worker (see the module docstring).",
    job_type_required: bool = True,
    job_type_help: str = "job type to lease; repeat for several",
) -> argparse.ArgumentParser:
    """This worker's options (and their environment variables), for parse_args and for
    examples that reuse them (examples/ingest_worker.py, whose --job-type is optional)."""
    env = os.environ.get
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--target",
        default=env("ORCHESTRATOR_GRPC_TARGET", DEFAULT_TARGET),
        help=f"gRPC address HOST:PORT (ORCHESTRATOR_GRPC_TARGET; {DEFAULT_TARGET})",
    )
    parser.add_argument(
        "--token-url",
        default=env("ORCHESTRATOR_TOKEN_URL", DEFAULT_TOKEN_URL),
        help=f"OAuth token endpoint (ORCHESTRATOR_TOKEN_URL; {DEFAULT_TOKEN_URL})",
    )
    parser.add_argument(
        "--client-id", default=env("ORCHESTRATOR_CLIENT_ID"), help="(ORCHESTRATOR_CLIENT_ID)"
    )
    parser.add_argument(
        "--client-secret",
        default=env("ORCHESTRATOR_CLIENT_SECRET"),
        help="(ORCHESTRATOR_CLIENT_SECRET)",
    )
    parser.add_argument(
        "--tenant",
        default=env("ORCHESTRATOR_TENANT"),
        help="tenant to work for, for an operator client (ORCHESTRATOR_TENANT)",
    )
    parser.add_argument(
        "--job-type",
        dest="job_types",
        action="append",
        required=job_type_required,
        help=job_type_help,
    )
    parser.add_argument(
        "--concurrency", type=_number(int, 1, 1000), default=4, help="jobs run at once (4)"
    )
    parser.add_argument(
        "--fail-with", metavar="CATEGORY:CODE", help="fail every job with this error"
    )
    parser.add_argument(
        "--non-retryable",
        action="store_true",
        help="with --fail-with: a non-retryable error (dead-letters at once)",
    )
    parser.add_argument(
        "--work-seconds", type=_number(float, 0), default=0.0, help="how long each job takes (0)"
    )
    parser.add_argument(
        "--lease-duration",
        type=_number(float, 1, 3600),
        default=30.0,
        help="lease length in seconds (30)",
    )
    parser.add_argument(
        "--grace-period",
        type=_number(float, 0),
        default=30.0,
        help="on SIGTERM, seconds running jobs get to finish (30)",
    )
    return parser


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """The rules between options (usage errors through `parser`), and `args.failure`."""
    if not args.client_id or not args.client_secret:
        parser.error("--client-id and --client-secret are required (or their variables)")
    if args.non_retryable and not args.fail_with:
        parser.error("--non-retryable goes with --fail-with")
    args.failure = None
    if args.fail_with:
        category, colon, code = args.fail_with.partition(":")
        if not colon:
            parser.error(f"--fail-with must be CATEGORY:CODE, got {args.fail_with!r}")
        try:
            args.failure = JobFailed(
                category,
                code,
                f"failing as asked (--fail-with {args.fail_with})",
                retryable=not args.non_retryable,
            )
        except ValueError as exc:
            parser.error(f"--fail-with: {exc}")
    return args


def make_handler(args: argparse.Namespace, worker_id: str) -> Handler:
    failure: JobFailed | None = args.failure
    work_seconds: float = args.work_seconds

    async def handle(job: LeasedJob) -> object:
        if work_seconds > 0:
            await asyncio.sleep(work_seconds)
        if failure is not None:
            raise JobFailed(
                failure.category, failure.code, failure.message, retryable=failure.retryable
            )
        return {
            "jobId": job.job_id,
            "attempt": job.attempt,
            "workerId": worker_id,
            "payload": job.payload,
        }

    return handle


async def run(args: argparse.Namespace) -> int:
    credentials = ClientCredentials(
        token_url=args.token_url,
        client_id=args.client_id,
        client_secret=args.client_secret,
        scopes=[WORKER_SCOPE],
    )
    worker_id = f"example-{socket.gethostname()}-{os.getpid()}"
    worker = Worker.connect(
        args.target,
        job_types=args.job_types,
        handler=make_handler(args, worker_id),
        credentials=credentials,
        headers=CallerHeaders(tenant=args.tenant),
        worker_id=worker_id,
        concurrency=args.concurrency,
        lease_duration=args.lease_duration,
        grace_period=args.grace_period,
    )
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
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per token request
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())

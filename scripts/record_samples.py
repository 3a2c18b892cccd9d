"""Record the JobEngine gateway samples (DESIGN.md §4.1) from a running server.

    .venv/bin/python scripts/record_samples.py [--out DIR] [--database-url URL]

Starts `orchestrator serve` on a temporary SQLite file (or on `--database-url`, an
empty database) and free loopback ports, creates tenant `acme` and its clients with
the CLI, gets tokens from `/oauth/token`, drives the scenario of
`tests/support/samples.py` through the public REST API (sources, quotas, jobs that a
worker of the worker SDK dead-letters, pack runs to cancel and retry) and writes the
eight exchanges to `docs/api/gateway/samples/orchestrator-*.json` (or `--out`).
`make samples` runs it; `tests/integration/test_samples.py` replays the same
scenario and fails when a file no longer matches what the server answers.

Each file is one exchange, JSON with two-space indentation and sorted keys:

    {
      "description": "what the exchange shows",
      "request": {
        "method": "POST",
        "path": "/jobengine/pack-runs/<packRunId>/cancel",
        "headers": {"Authorization": "Bearer <access token: SCOPES[, token form fields]>",
                    "X-Stella-Tenant": "acme", "X-Stella-Operator-Reason": "...", ...},
        "body": {}                                   # only when one is sent
      },
      "response": {
        "status": 200,
        "headers": {"Cache-Control": "...", "Content-Type": "application/json",
                    "ETag": "...", "X-Stella-Trace-Id": "..."},   # those answered
        "body": {...}                                # the JSON the server answered
      }
    }

No token is ever written: `Authorization` names the scope (and, for orch:quota and
orch:backfill, the token form's reason fields) instead.

Normalisation (what the test ignores when it compares a file with a live answer; the
files keep the recorded values):

- ids: strings under keys ending in `Id` (not `tenantId`) and under `retryOf`,
  `retriedBy`, `replayOf` become `<id:N>`, numbered by first appearance (sorted keys,
  request first), and the same placeholder replaces them inside other strings such as
  the request path, so that which id appears where is still compared;
- times: RFC 3339 timestamps become `<time>`; `oldestPendingAge` becomes `<duration>`;
- the `ETag` and `X-Stella-Trace-Id` response headers become `<etag>` and
  `<trace-id>`; `continuationToken` becomes `<continuation-token>`;
- access tokens are never recorded (see above).

Everything else (fingerprints, counts, statuses, messages, order, caching headers) is
compared as recorded. Exit status 0 when the eight files were written, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: the repository is not on the path
    sys.path.insert(0, str(REPO))

from tests.support.samples import (  # noqa: E402
    SAMPLES_DIR,
    record_scenario,
    served,
    write_samples,
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=SAMPLES_DIR, help="folder of the sample files")
    parser.add_argument(
        "--database-url",
        default=None,
        help="an empty database for the server (default: a temporary SQLite file)",
    )
    args = parser.parse_args(argv)
    try:
        with served(args.database_url) as server:
            samples = asyncio.run(record_scenario(server))
    except RuntimeError as exc:
        print(f"record_samples: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    for path in write_samples(samples, args.out):
        print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())

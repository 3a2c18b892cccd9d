"""Delivery of `notify.consolidation` jobs to NOTIFICATION_URL (issue 13 point 5), in
the server process, as a worker of the job engine would: lease, POST, complete or fail.

Each pass finds the tenants with such jobs eligible now (at most TENANTS_PER_PASS,
`storage/repositories/waiting_tenants.py`), leases from them in turn (the leasing
contract: quotas, fencing tokens, events, one tenant per lease), starting with another
tenant each pass, up to `concurrency` jobs in all, and delivers them concurrently: the
job's payload, verbatim, as the JSON body of `POST {NOTIFICATION_URL}/notify` with
`Idempotency-Key: <job id>` (the same on every attempt of the job, so the notification
service can drop a repeat), X-Stella-Tenant, and as X-Stella-Trace-Id and traceparent
the trace id of the call that enqueued the job (its `job.enqueued` event; the job id's
hex digits when that event is gone). A 2xx answer completes the job (its result
`{"delivered": true}`), whatever its body; any failure (an error status, timeout,
unreachable) fails the attempt retryable, category `upstream`, code the failure's
reason (UPSTREAM_STATUS...), so the job engine retries it with the job's backoff and
dead-letters it after its maxAttempts. The POST itself is not retried inside an
attempt: the job's retries are the retries.

NOTIFICATION_URL unset: the loop is not started and the jobs wait, queued, until a
server with it set leases them (or their operator cancels them). While the breaker of
the notification service is open, passes lease nothing: the jobs wait instead of
spending their attempts on calls that would not be made. Passes run every `interval`
seconds while nothing was delivered, back to back while work remains; a failing pass
(the database restarting) is logged and retried after the interval. Leases last
`lease_s` (> one attempt's timeout), so a server that dies mid-delivery returns its
jobs to the queue through the lease reaper.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import socket
from collections.abc import Coroutine
from typing import Any

from server.domain import leasing
from server.domain.errors import DomainError
from server.domain.leasing import Completion, Failure, FencingToken, LeaseRequest
from server.storage.db import Database
from server.storage.repositories.waiting_tenants import enqueue_traces, waiting_tenants
from server.storage.store import SqlStore
from server.upstreams.client import UpstreamClient, trace_headers

JOB_TYPE = "notify.consolidation"
NOTIFY_PATH = "/notify"
TENANTS_PER_PASS = 100
FAILURE_CATEGORY = "upstream"

log = logging.getLogger("orchestrator.notify")


class NotifyDelivery:
    """See the module docstring. `run_once()` is one pass: how many jobs it leased."""

    def __init__(
        self,
        store: SqlStore,
        db: Database,
        notification: UpstreamClient,
        *,
        interval: float,
        concurrency: int,
    ) -> None:
        self._store = store
        self._db = db
        self._upstream = notification
        self._interval = interval
        self._concurrency = concurrency
        self._lease_s = max(30.0, 2 * notification.attempt_timeout_s)
        self._worker_id = f"orchestrator-notify:{socket.gethostname()}:{os.getpid()}"
        self._task: asyncio.Task[None] | None = None
        self._passes = 0

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._task

    def start(self) -> None:
        """Starts the loop, unless NOTIFICATION_URL is unset (jobs then wait)."""
        if not self._upstream.configured:
            log.info("NOTIFICATION_URL is not set: %s jobs wait until it is", JOB_TYPE)
            return
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="notify-delivery")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            leased = 0
            try:
                leased = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # the next pass tries again
                log.warning("notification delivery pass failed; retrying", exc_info=True)
            if not leased:
                await asyncio.sleep(self._interval)

    async def run_once(self) -> int:
        if await self._upstream.open_for() is not None:
            return 0  # the breaker is open: leave the jobs waiting, spend no attempt
        leases = self._store.leases
        tenants = await waiting_tenants(self._db, JOB_TYPE, leases.now(), TENANTS_PER_PASS)
        if tenants:  # start with another tenant each pass: none waits behind a backlog
            self._passes += 1
            first = self._passes % len(tenants)
            tenants = tenants[first:] + tenants[:first]
        deliveries: list[Coroutine[Any, Any, None]] = []
        for tenant_id in tenants:
            room = self._concurrency - len(deliveries)
            if room <= 0:
                break
            request = LeaseRequest(
                tenant_id=tenant_id,
                worker_id=self._worker_id,
                job_types=(JOB_TYPE,),
                max_jobs=room,
                wait_s=0.0,
                lease_s=self._lease_s,
                trace_id=None,
            )
            rows = await leasing.lease_jobs(self._store, request)
            traces = await enqueue_traces(self._db, tenant_id, [row.job_id for row in rows])
            deliveries.extend(self._deliver(tenant_id, row, traces.get(row.job_id)) for row in rows)
        await asyncio.gather(*deliveries)
        return len(deliveries)

    async def _deliver(self, tenant_id: str, row: Any, trace_id: str | None) -> None:
        token = FencingToken(job_id=row.job_id, lease_id=row.lease_id, attempt=row.attempts)
        payload = json.loads(row.payload) if row.payload else {}
        headers = trace_headers(trace_id or row.job_id.replace("-", ""), tenant_id)
        headers["Idempotency-Key"] = row.job_id
        leases = self._store.leases
        try:
            await self._upstream.post_json(NOTIFY_PATH, payload, headers=headers, expect_json=False)
        except DomainError as error:
            details = {key: str(value) for key, value in error.metadata.items()}
            failure = Failure(
                token=token,
                category=FAILURE_CATEGORY,
                code=error.reason,
                message=error.message[: leasing.MESSAGE_MAX],
                retryable=True,
                details=details,
            )
            await leases.fail(tenant_id, [failure], leases.now(), None, random.random)
            log.info("notification job %s failed: %s", row.job_id, error.message)
            return
        except Exception as exc:  # a bug here must not lose the job: fail it retryable
            log.exception("notification job %s: delivery failed unexpectedly", row.job_id)
            failure = Failure(
                token=token,
                category=FAILURE_CATEGORY,
                code="DELIVERY_ERROR",
                message=f"{type(exc).__name__}",
                retryable=True,
            )
            await leases.fail(tenant_id, [failure], leases.now(), None, random.random)
            return
        result = json.dumps({"delivered": True}, separators=(",", ":"))
        await leases.complete(tenant_id, [Completion(token, result)], leases.now(), None)

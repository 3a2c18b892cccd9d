"""The worker SDK: run an async handler for leased jobs (issue 9 point 5).

    async def handler(job: LeasedJob) -> object:
        return {"echo": job.payload}

    worker = Worker.connect(
        "127.0.0.1:50051",
        job_types=["thumbnail"],
        handler=handler,
        credentials=ClientCredentials(token_url, client_id, client_secret, scopes=["orch:operate"]),
        concurrency=8,
    )
    await worker.run(handle_signals=True)  # returns after SIGTERM, once drained

See `clients.worker.runner` for what the worker does, `examples/worker.py` for a
runnable one.
"""

from clients.worker.job import Handler, JobFailed, LeasedJob
from clients.worker.runner import Worker

__all__ = ["Handler", "JobFailed", "LeasedJob", "Worker"]

"""RQ (redis-py with hiredis; a blocking client; jobs are plain functions).

Default: `rq worker bench`, which forks a work horse for every job. Tuned (and every drain):
`rq worker --worker-class rq.SimpleWorker`, which runs jobs in the worker process itself. An RQ
worker runs one job at a time, so the sleep scenario (concurrency 100 in one process) does not
apply. The worker blocks on BLPOP; results are kept (`result_ttl` 500 s by default) and awaited
with `Job.latest_result(timeout=...)`, which blocks on XREAD. Bulk: `Queue.enqueue_many`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from _harness import HERE, QUEUE, SLEEP_SECONDS, Peer, Unsupported, WorkerCommand, main
from redis import Redis
from rq import Queue

FUNCTIONS = {"noop": "rq_driver.noop", "sleep": "rq_driver.sleep"}


def noop() -> None:
    return None


def sleep() -> None:
    time.sleep(SLEEP_SECONDS)


class RqPeer(Peer):
    name = "rq"
    packages = ("rq", "redis", "hiredis")
    blocking = True

    async def open(self, url: str) -> None:
        await super().open(url)
        self.redis = Redis.from_url(url)
        self.queue = Queue(QUEUE, connection=self.redis)

    async def close(self) -> None:
        self.redis.close()

    def post_blocking(self, kind: str) -> None:
        self.queue.enqueue(FUNCTIONS[kind])

    async def post(self, kind: str) -> None:
        self.post_blocking(kind)

    async def post_many(self, kind: str, count: int) -> None:
        self.queue.enqueue_many([Queue.prepare_data(FUNCTIONS[kind]) for _ in range(count)])

    async def roundtrip(self, config: str, timeout: float) -> None:
        job = self.queue.enqueue(FUNCTIONS["noop"])
        if job.latest_result(timeout=max(1, round(timeout))) is None:
            raise TimeoutError(f"job {job.id} has no result after {timeout} s")

    async def outstanding(self, posted: int) -> int:
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(self.queue.finished_job_registry.key)
            pipe.zcard(self.queue.failed_job_registry.key)
            finished, failed = pipe.execute()
        return posted - int(finished) - int(failed)

    def pipeline_workers(self, record: Path) -> list[WorkerCommand]:
        raise Unsupported("no pipelines: depends_on orders jobs, but passes no result on")

    def worker_commands(
        self, *, kind: str, processes: int, config: str, purpose: str
    ) -> list[WorkerCommand]:
        if kind == "sleep":
            raise Unsupported("an RQ worker process runs one job at a time")
        argv = [str(Path(sys.executable).with_name("rq")), "worker", QUEUE, "--url", self.url]
        argv += ["--path", str(HERE), "--logging_level", "WARNING"]
        if config == "tuned":
            argv += ["--worker-class", "rq.SimpleWorker"]
        return [WorkerCommand(argv) for _ in range(processes)]


if __name__ == "__main__":
    main(RqPeer())

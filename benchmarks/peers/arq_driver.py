"""arq (redis-py with hiredis; the worker on uvloop, which arq's own CLI does not install).

Default: `Worker(max_jobs=10, poll_delay=0.5)`, results awaited with `Job.result()` (polls
every 0.5 s). Tuned: `poll_delay=0.001` on both sides, `max_jobs=100`. Results are kept (arq's
default `keep_result=3600`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import uvloop
from _harness import QUEUE, SLEEP_SECONDS, Peer, WorkerCommand, main
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.worker import Worker

TUNED_POLL = 0.001


async def noop(ctx: dict[str, Any]) -> None:
    return None


async def sleep(ctx: dict[str, Any]) -> None:
    await asyncio.sleep(SLEEP_SECONDS)


class ArqPeer(Peer):
    name = "arq"
    packages = ("arq", "redis", "hiredis", "uvloop")

    async def open(self, url: str) -> None:
        await super().open(url)
        self.pool: ArqRedis = await create_pool(
            RedisSettings.from_dsn(url), default_queue_name=QUEUE
        )

    async def close(self) -> None:
        await self.pool.aclose()

    async def post(self, kind: str) -> None:
        await self.pool.enqueue_job(kind)

    async def roundtrip(self, config: str, timeout: float) -> None:
        job = await self.pool.enqueue_job("noop")
        if job is None:
            raise RuntimeError("arq refused the job")
        poll = TUNED_POLL if config == "tuned" else 0.5
        await job.result(timeout=timeout, poll_delay=poll)

    async def outstanding(self, posted: int) -> int:
        # A job stays in the queue's sorted set until it has finished.
        return int(await self.pool.zcard(QUEUE))

    def worker_commands(
        self, *, kind: str, processes: int, config: str, purpose: str
    ) -> list[WorkerCommand]:
        argv = [sys.executable, __file__, "worker", "--url", self.url, "--config", config]
        if kind == "sleep":
            argv += ["--max-jobs", "100"]
        return [WorkerCommand(argv) for _ in range(processes)]

    def run_worker(self, argv: list[str]) -> None:
        parser = argparse.ArgumentParser()
        parser.add_argument("--url", required=True)
        parser.add_argument("--config", choices=["default", "tuned"], required=True)
        parser.add_argument("--max-jobs", type=int)
        args = parser.parse_args(argv)
        settings: dict[str, Any] = {}
        if args.config == "tuned":
            settings = {"poll_delay": TUNED_POLL, "max_jobs": 100}
        if args.max_jobs:
            settings["max_jobs"] = args.max_jobs
        uvloop.install()  # arq's Worker makes its loop from the policy
        worker = Worker(
            functions=[noop, sleep],
            queue_name=QUEUE,
            redis_settings=RedisSettings.from_dsn(args.url),
            **settings,
        )
        worker.run()


if __name__ == "__main__":
    main(ArqPeer())

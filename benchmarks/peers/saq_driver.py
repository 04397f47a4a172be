"""SAQ (saq[hiredis]; the worker on uvloop, as its `saq` command would run it with uvloop
installed).

Default: `Worker(concurrency=10)`, results awaited with `Queue.apply()` (polls every 0.5 s).
Tuned: concurrency 100 (with a connection pool to match: each of the 100 tasks holds a connection
in BLMOVE, and redis-py 8's pools stop at 100 by default), results awaited with
`Job.refresh(until_complete=0.05)` (pushed over pub/sub), repeated until the job is complete:
a completion that lands between refresh()'s read and its subscription is otherwise missed, and
the call waits out its whole timeout. The worker blocks on BLMOVE, so it has
no poll interval of its own. Results are kept (SAQ's default job TTL).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from typing import Any

import uvloop
from _harness import QUEUE, SLEEP_SECONDS, Peer, WorkerCommand, main
from redis.asyncio import Redis
from saq import Queue, Worker
from saq.queue.redis import RedisQueue

RELISTEN = 0.05  # seconds a tuned client listens for a completion before reading the job again


async def noop(ctx: dict[str, Any]) -> None:
    return None


async def sleep(ctx: dict[str, Any]) -> None:
    await asyncio.sleep(SLEEP_SECONDS)


class SaqPeer(Peer):
    name = "saq"
    packages = ("saq", "redis", "hiredis", "uvloop")

    async def open(self, url: str) -> None:
        await super().open(url)
        self.queue = Queue.from_url(url, name=QUEUE)
        await self.queue.connect()

    async def close(self) -> None:
        await self.queue.disconnect()

    async def post(self, kind: str) -> None:
        await self.queue.enqueue(kind)

    async def roundtrip(self, config: str, timeout: float) -> None:
        if config == "default":
            await self.queue.apply("noop", timeout=timeout)
            return
        job = await self.queue.enqueue("noop")
        if job is None:
            raise RuntimeError("SAQ refused the job")
        deadline = time.monotonic() + timeout
        while not job.completed:
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job.id} not complete after {timeout} s")
            # refresh() reads the job, then subscribes: a completion published in between is
            # missed (seen in 2 of 3 runs of 1,000 trips), so listen briefly and read again.
            with contextlib.suppress(TimeoutError):
                await job.refresh(until_complete=RELISTEN)

    async def outstanding(self, posted: int) -> int:
        # A job leaves the "incomplete" sorted set when it finishes.
        return await self.queue.count("incomplete")

    def worker_commands(
        self, *, kind: str, processes: int, config: str, purpose: str
    ) -> list[WorkerCommand]:
        concurrency = "10" if config == "default" else "100"
        argv = [sys.executable, __file__, "worker", "--url", self.url]
        return [WorkerCommand([*argv, "--concurrency", concurrency]) for _ in range(processes)]

    def run_worker(self, argv: list[str]) -> None:
        parser = argparse.ArgumentParser()
        parser.add_argument("--url", required=True)
        parser.add_argument("--concurrency", type=int, required=True)
        args = parser.parse_args(argv)
        uvloop.install()  # saq.worker.start makes its loop from the policy

        async def serve() -> None:
            redis = Redis.from_url(args.url, max_connections=args.concurrency + 50)
            queue = RedisQueue(redis, name=QUEUE)
            worker = Worker(queue, functions=[noop, sleep], concurrency=args.concurrency)
            await queue.connect()
            try:
                await worker.start()
            finally:
                await queue.disconnect()

        asyncio.new_event_loop().run_until_complete(serve())


if __name__ == "__main__":
    main(SaqPeer())

"""streaQ (coredis; Redis streams; anyio on uvloop through `anyio_kwargs`).

Default: `Worker(concurrency=16)`; results awaited with `Task.result()`, pushed over pub/sub, but
each call then waits out coredis's 0.1 s unsubscription timeout. Tuned: the client polls
`Task.status()` every 1 ms until the task is done instead (it does not read the result value).
The worker blocks on XREADGROUP, so it has no poll interval. Drains run at concurrency 16 (faster
than 100 for no-op tasks here: ~515/s against ~360/s) and 100 for the sleep tasks. Results are
kept (streaQ's default TTL, 5 minutes). The worker is run as `streaq run` runs it
(`Worker.run_sync()`), from this module, whose settings come from the environment.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

from _harness import QUEUE, SLEEP_SECONDS, Peer, WorkerCommand, main
from streaq import TaskStatus, Worker

TUNED_POLL = 0.001

worker: Worker[Any] = Worker(
    redis_url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
    queue_name=QUEUE,
    concurrency=int(os.environ.get("BENCH_CONCURRENCY", "16")),
    anyio_kwargs={"use_uvloop": True},
)


@worker.task(name="noop")
async def noop() -> None:
    return None


@worker.task(name="sleep")
async def sleep() -> None:
    await asyncio.sleep(SLEEP_SECONDS)


class StreaqPeer(Peer):
    name = "streaq"
    packages = ("streaq", "coredis", "anyio", "uvloop")

    async def open(self, url: str) -> None:
        await super().open(url)
        self.worker: Worker[Any] = Worker(redis_url=url, queue_name=QUEUE)
        await self.worker.__aenter__()

    async def close(self) -> None:
        await self.worker.__aexit__(None, None, None)

    def _task(self, kind: str) -> Any:
        return self.worker.enqueue_unsafe(kind)  # by name: the client has no task registry

    async def post(self, kind: str) -> None:
        await self._task(kind)

    async def post_many(self, kind: str, count: int) -> None:
        await self.worker.enqueue_many([self._task(kind) for _ in range(count)])

    async def roundtrip(self, config: str, timeout: float) -> None:
        task = await self._task("noop")
        if config == "default":
            await task.result(timeout=timeout)
            return
        deadline = time.monotonic() + timeout
        while await task.status() != TaskStatus.DONE:
            if time.monotonic() > deadline:
                raise TimeoutError(f"task {task.id} not done after {timeout} s")
            await asyncio.sleep(TUNED_POLL)

    async def outstanding(self, posted: int) -> int:
        # Finished tasks are acknowledged and deleted from the stream.
        return await self.worker.queue_size()

    def worker_commands(
        self, *, kind: str, processes: int, config: str, purpose: str
    ) -> list[WorkerCommand]:
        env = {
            "BENCH_REDIS_URL": self.url,
            "BENCH_CONCURRENCY": "100" if kind == "sleep" else "16",
        }
        argv = [sys.executable, __file__, "worker"]
        return [WorkerCommand(argv, env) for _ in range(processes)]

    def run_worker(self, argv: list[str]) -> None:
        worker.run_sync()  # what `streaq run streaq_driver:worker` does, less its INFO logging


if __name__ == "__main__":
    main(StreaqPeer())

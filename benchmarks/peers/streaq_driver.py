"""streaQ (coredis; Redis streams; anyio on uvloop through `anyio_kwargs`).

Default: `Worker(concurrency=16)`; results awaited with `Task.result()`, pushed over pub/sub, but
each call then waits out coredis's 0.1 s unsubscription timeout. Tuned: the client polls
`Task.status()` every 1 ms until the task is done instead (it does not read the result value).
The worker blocks on XREADGROUP, so it has no poll interval. Drains run at concurrency 16 (faster
than 100 for no-op tasks here: ~515/s against ~360/s) and 100 for the sleep tasks. Results are
kept (streaQ's default TTL, 5 minutes). The worker is run as `streaq run` runs it
(`Worker.run_sync()`), from this module, whose settings come from the environment.
Pipeline: `stage1.enqueue(msg).then(stage2).then(stage3)` (streaQ's task dependencies: the
three tasks are stored at once, each held until the one before it is done, then given its
return value). streaQ puts a pipeline's tasks in the first task's queue: a stage cannot be a
queue of its own. So the three worker processes serve one queue, `bench-1`, each with all
three tasks: three processes, as for the other peers, but any of them runs any stage.
Pipelined tasks "can't be enqueued in batches" (`enqueue_many` refuses them): the inputs are
posted by 100 tasks at once.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

from _harness import (
    PIPELINE_QUEUES,
    PIPELINE_RECORD,
    QUEUE,
    SLEEP_SECONDS,
    Peer,
    WorkerCommand,
    main,
    pipeline_end,
    pipeline_step,
)
from streaq import TaskStatus, Worker

TUNED_POLL = 0.001

worker: Worker[Any] = Worker(
    redis_url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
    queue_name=os.environ.get("BENCH_QUEUE", QUEUE),
    concurrency=int(os.environ.get("BENCH_CONCURRENCY", "16")),
    anyio_kwargs={"use_uvloop": True},
)


@worker.task(name="noop")
async def noop() -> None:
    return None


@worker.task(name="sleep")
async def sleep() -> None:
    await asyncio.sleep(SLEEP_SECONDS)


def pipeline_stages(on: Worker[Any]) -> tuple[Any, Any, Any]:
    """The pipeline's three tasks, registered with `on` (the workers', or the client's: a
    pipeline is built of registered tasks, not names)."""

    async def stage1(msg: list[Any]) -> list[Any]:
        return pipeline_step(msg)

    async def stage2(msg: list[Any]) -> list[Any]:
        return pipeline_step(msg)

    async def stage3(msg: list[Any]) -> None:
        pipeline_end(msg)

    first, second, third = (on.task(name=f.__name__)(f) for f in (stage1, stage2, stage3))
    return first, second, third


pipeline_stages(worker)


class StreaqPeer(Peer):
    name = "streaq"
    packages = ("streaq", "coredis", "anyio", "uvloop")

    async def open(self, url: str) -> None:
        await super().open(url)
        self.worker: Worker[Any] = Worker(redis_url=url, queue_name=QUEUE)
        await self.worker.__aenter__()

        self.pipeline: Worker[Any] = Worker(redis_url=url, queue_name=PIPELINE_QUEUES[0])
        self.stages = pipeline_stages(self.pipeline)
        await self.pipeline.__aenter__()

    async def close(self) -> None:
        await self.pipeline.__aexit__(None, None, None)
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

    async def pipeline_post(self, message: list[Any]) -> None:
        first, second, third = self.stages
        await first.enqueue(message).then(second).then(third)

    def pipeline_workers(self, record: Path) -> list[WorkerCommand]:
        env = {
            "BENCH_REDIS_URL": self.url,
            "BENCH_CONCURRENCY": "16",
            "BENCH_QUEUE": PIPELINE_QUEUES[0],
            PIPELINE_RECORD: str(record),
        }
        return [WorkerCommand([sys.executable, __file__, "worker"], env) for _ in PIPELINE_QUEUES]

    def run_worker(self, argv: list[str]) -> None:
        worker.run_sync()  # what `streaq run streaq_driver:worker` does, less its INFO logging


if __name__ == "__main__":
    main(StreaqPeer())

"""taskiq with taskiq-redis (redis-py with hiredis; `taskiq worker` runs on uvloop when it is
installed, as here).

Broker: `ListQueueBroker` (LPUSH / BRPOP: the fastest taskiq-redis broker; it does not
acknowledge, so a job a dying worker had taken is lost). taskiq stores no results unless a
result backend is configured, so the drains run without one (its default), and the round trips
with `RedisAsyncResultBackend`. Worker: `taskiq worker taskiq_driver:broker --workers 1
--max-async-tasks 100` (100 is the default; one worker process per `--workers 1`, under
taskiq's supervising process). Default round trip: `wait_result()` polls every 0.2 s; tuned:
every 1 ms.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from _harness import QUEUE, SLEEP_SECONDS, Peer, Unsupported, WorkerCommand, main
from redis.asyncio import Redis
from taskiq import AsyncBroker
from taskiq_redis import ListQueueBroker, RedisAsyncResultBackend

TUNED_POLL = 0.001


def make_broker(url: str, results: bool) -> AsyncBroker:
    broker: AsyncBroker = ListQueueBroker(url, queue_name=QUEUE)
    if results:
        broker = broker.with_result_backend(RedisAsyncResultBackend(url))
    return broker


broker = make_broker(
    os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
    results=os.environ.get("BENCH_RESULTS") == "1",
)


@broker.task(task_name="noop")
async def noop() -> None:
    return None


@broker.task(task_name="sleep")
async def sleep() -> None:
    await asyncio.sleep(SLEEP_SECONDS)


class TaskiqPeer(Peer):
    name = "taskiq"
    packages = ("taskiq", "taskiq-redis", "redis", "hiredis", "uvloop")

    async def open(self, url: str) -> None:
        await super().open(url)
        self.broker = make_broker(url, results=True)
        self.tasks: dict[str, Any] = {
            name: self.broker.register_task(func, task_name=name)
            for name, func in (("noop", noop.original_func), ("sleep", sleep.original_func))
        }
        await self.broker.startup()
        self.redis = Redis.from_url(url)

    async def close(self) -> None:
        await self.broker.shutdown()
        await self.redis.aclose()

    async def post(self, kind: str) -> None:
        await self.tasks[kind].kiq()

    async def roundtrip(self, config: str, timeout: float) -> None:
        task = await self.tasks["noop"].kiq()
        poll = TUNED_POLL if config == "tuned" else 0.2
        result = await task.wait_result(check_interval=poll, timeout=timeout)
        if result.is_err:
            raise RuntimeError(f"task failed: {result.error}")

    async def outstanding(self, posted: int) -> int:
        # Jobs still in the list. taskiq keeps no record of a job once a worker has taken it,
        # so the at most 100 a worker holds are not counted (a no-op one ends within microseconds,
        # a sleep one within 10 ms).
        return int(await self.redis.llen(QUEUE))

    def pipeline_workers(self, record: Path) -> list[WorkerCommand]:
        raise Unsupported("pipelines are a package of their own (taskiq-pipelines): not installed")

    def worker_commands(
        self, *, kind: str, processes: int, config: str, purpose: str
    ) -> list[WorkerCommand]:
        taskiq = str(Path(sys.executable).with_name("taskiq"))
        argv = [taskiq, "worker", "taskiq_driver:broker", "--workers", "1"]
        argv += ["--max-async-tasks", "100", "--log-level", "WARNING"]
        env = {"BENCH_REDIS_URL": self.url, "BENCH_RESULTS": "1" if purpose == "roundtrip" else "0"}
        return [WorkerCommand(argv, env) for _ in range(processes)]


if __name__ == "__main__":
    main(TaskiqPeer())

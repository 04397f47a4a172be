"""Dramatiq (dramatiq[redis], redis-py with hiredis; a blocking client).

Worker: `dramatiq dramatiq_driver:broker --processes 1 --threads 8` (its default thread count; one
worker process under dramatiq's supervising process); the sleep jobs are an `async def` actor
(the AsyncIO middleware runs them on one event loop) with `--threads 100`. Dramatiq stores no
results unless the Results middleware is configured, so the drains run without it (its default)
and the round trips with `RedisBackend`, awaited with `get_result(block=True)` (BRPOPLPUSH:
pushed). An idle worker polls for messages with a growing back-off up to `worker_timeout`:
1,000 ms by default, 1 ms tuned (the `dramatiq_worker_timeout` environment variable).
Pipeline: `pipeline([stage1.message(msg), stage2.message(), stage3.message()]).run()`, each actor
on its stage's queue, one worker per queue (`--queues bench-1` ...) at the tuned settings, no
result backend: the Pipelines middleware (one of dramatiq's defaults) of the worker that ran a
stage enqueues the next with the return value appended to its arguments. Dramatiq has no bulk
API: the inputs are posted from 8 threads.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import dramatiq
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
from dramatiq import Actor, pipeline
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware.asyncio import AsyncIO
from dramatiq.results import Results
from dramatiq.results.backends.redis import RedisBackend
from redis import Redis


def noop() -> None:
    return None


async def sleep() -> None:
    await asyncio.sleep(SLEEP_SECONDS)


def stage1(msg: list[Any]) -> list[Any]:
    return pipeline_step(msg)


def stage2(msg: list[Any]) -> list[Any]:
    return pipeline_step(msg)


def stage3(msg: list[Any]) -> None:
    pipeline_end(msg)


def declare(url: str, results: bool) -> tuple[RedisBroker, dict[str, Actor[..., Any]]]:
    """A broker and its actors; with `results`, the Results middleware stores noop's results."""
    broker = RedisBroker(url=url)
    broker.add_middleware(AsyncIO())
    if results:
        broker.add_middleware(Results(backend=RedisBackend(url=url)))
    options: dict[str, Any] = {"broker": broker, "queue_name": QUEUE}
    results_option = {"store_results": True} if results else {}
    stages = {
        f.__name__: dramatiq.actor(f, actor_name=f.__name__, broker=broker, queue_name=queue)
        for f, queue in zip((stage1, stage2, stage3), PIPELINE_QUEUES, strict=True)
    }
    return broker, {
        "noop": dramatiq.actor(noop, actor_name="noop", **options, **results_option),
        "sleep": dramatiq.actor(sleep, actor_name="sleep", **options),
        **stages,
    }


if __name__ != "__main__":  # imported by `dramatiq dramatiq_driver:broker`
    broker, _ = declare(os.environ["BENCH_REDIS_URL"], os.environ.get("BENCH_RESULTS") == "1")


class DramatiqPeer(Peer):
    name = "dramatiq"
    packages = ("dramatiq", "redis", "hiredis")
    blocking = True

    async def open(self, url: str) -> None:
        await super().open(url)
        self.broker, self.actors = declare(url, results=True)
        self.backend = RedisBackend(url=url)
        self.redis = Redis.from_url(url)

    async def close(self) -> None:
        self.broker.close()
        self.redis.close()

    def post_blocking(self, kind: str) -> None:
        self.actors[kind].send()

    async def post(self, kind: str) -> None:
        self.post_blocking(kind)

    async def roundtrip(self, config: str, timeout: float) -> None:
        message = self.actors["noop"].send()
        message.get_result(backend=self.backend, block=True, timeout=int(timeout * 1000))

    async def outstanding(self, posted: int) -> int:
        # A message stays in the queue's hash until a worker acknowledges it, after running it.
        return int(self.redis.hlen(f"dramatiq:{QUEUE}.msgs"))

    def worker_commands(
        self, *, kind: str, processes: int, config: str, purpose: str
    ) -> list[WorkerCommand]:
        dramatiq_cli = str(Path(sys.executable).with_name("dramatiq"))
        threads = "100" if kind == "sleep" else "8"
        argv = [dramatiq_cli, "dramatiq_driver:broker", "--processes", "1", "--threads", threads]
        env = {
            "BENCH_REDIS_URL": self.url,
            "BENCH_RESULTS": "1" if purpose == "roundtrip" else "0",
            "dramatiq_worker_timeout": "1000" if config == "default" else "1",
        }
        return [WorkerCommand(argv, env) for _ in range(processes)]

    def pipeline_post_blocking(self, message: list[Any]) -> None:
        stages = [self.actors["stage1"].message(message)]
        stages += [self.actors[name].message() for name in ("stage2", "stage3")]
        pipeline(stages, broker=self.broker).run()

    async def pipeline_post(self, message: list[Any]) -> None:
        self.pipeline_post_blocking(message)

    def pipeline_workers(self, record: Path) -> list[WorkerCommand]:
        dramatiq_cli = str(Path(sys.executable).with_name("dramatiq"))
        env = {
            "BENCH_REDIS_URL": self.url,
            "BENCH_RESULTS": "0",
            "dramatiq_worker_timeout": "1",  # the tuned settings, as every throughput run
            PIPELINE_RECORD: str(record),
        }
        commands = []
        for queue in PIPELINE_QUEUES:  # (--queues takes the arguments after it: last)
            argv = [dramatiq_cli, "dramatiq_driver:broker", "--processes", "1", "--threads", "8"]
            commands.append(WorkerCommand([*argv, "--queues", queue], env))
        return commands


if __name__ == "__main__":
    main(DramatiqPeer())

"""Dramatiq (dramatiq[redis], redis-py with hiredis; a blocking client).

Worker: `dramatiq dramatiq_driver:broker --processes 1 --threads 8` (its default thread count; one
worker process under dramatiq's supervising process); the sleep jobs are an `async def` actor
(the AsyncIO middleware runs them on one event loop) with `--threads 100`. Dramatiq stores no
results unless the Results middleware is configured, so the drains run without it (its default)
and the round trips with `RedisBackend`, awaited with `get_result(block=True)` (BRPOPLPUSH:
pushed). An idle worker polls for messages with a growing back-off up to `worker_timeout`:
1,000 ms by default, 1 ms tuned (the `dramatiq_worker_timeout` environment variable).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import dramatiq
from _harness import QUEUE, SLEEP_SECONDS, Peer, WorkerCommand, main
from dramatiq import Actor
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware.asyncio import AsyncIO
from dramatiq.results import Results
from dramatiq.results.backends.redis import RedisBackend
from redis import Redis


def noop() -> None:
    return None


async def sleep() -> None:
    await asyncio.sleep(SLEEP_SECONDS)


def declare(url: str, results: bool) -> tuple[RedisBroker, dict[str, Actor[..., Any]]]:
    """A broker and its actors; with `results`, the Results middleware stores noop's results."""
    broker = RedisBroker(url=url)
    broker.add_middleware(AsyncIO())
    if results:
        broker.add_middleware(Results(backend=RedisBackend(url=url)))
    options: dict[str, Any] = {"broker": broker, "queue_name": QUEUE}
    results_option = {"store_results": True} if results else {}
    return broker, {
        "noop": dramatiq.actor(noop, actor_name="noop", **options, **results_option),
        "sleep": dramatiq.actor(sleep, actor_name="sleep", **options),
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


if __name__ == "__main__":
    main(DramatiqPeer())

"""Celery (celery[redis]: kombu's Redis transport on redis-py with hiredis; a blocking client).

Celery keeps no results unless a result backend is configured, so the drains run without one
(its default) and the round trips with the Redis backend, whose `AsyncResult.get()` is pushed
over pub/sub. Default worker: `celery worker` (prefork pool, one child per core). Tuned (and the
no-op drains): `--pool solo` (jobs run in the worker process itself) with gossip, mingle and
heartbeats off. The sleep jobs (celery has no asyncio) are `time.sleep(0.01)` on `--pool threads
--concurrency 100`. Bulk: `group(...).apply_async()`, which still sends one message per job.
Pipeline: `chain(stage1.s(msg), stage2.s(), stage3.s())`, each signature routed to its stage's
queue, one `--pool solo` worker per queue (`-Q bench-1` ...), no result backend: a worker that
finishes a task of a chain sends the chain's next task itself (with the return value as its
first argument). Inputs in bulk: `group(chain(...), ...).apply_async()` in calls of 1,000.
"""

from __future__ import annotations

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
from celery import Celery, chain, group
from redis import Redis


def make_app(url: str, results: bool) -> Celery:
    app = Celery("bench", broker=url, backend=url if results else None)
    app.conf.update(
        task_default_queue=QUEUE,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    return app


app = make_app(
    os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
    results=os.environ.get("BENCH_RESULTS") == "1",
)


@app.task(name="noop")
def noop() -> None:
    return None


@app.task(name="sleep")
def sleep() -> None:
    time.sleep(SLEEP_SECONDS)


@app.task(name="stage1")
def stage1(msg: list[Any]) -> list[Any]:
    return pipeline_step(msg)


@app.task(name="stage2")
def stage2(msg: list[Any]) -> list[Any]:
    return pipeline_step(msg)


@app.task(name="stage3")
def stage3(msg: list[Any]) -> None:
    pipeline_end(msg)


class CeleryPeer(Peer):
    name = "celery"
    packages = ("celery", "kombu", "redis", "hiredis")
    blocking = True

    async def open(self, url: str) -> None:
        await super().open(url)
        self.app = make_app(url, results=False)  # posting, as celery does by default
        self.results_app = make_app(url, results=True)  # the round trips
        self.redis = Redis.from_url(url)

    async def close(self) -> None:
        self.app.close()
        self.results_app.close()
        self.redis.close()

    def post_blocking(self, kind: str) -> None:
        self.app.send_task(kind)

    async def post(self, kind: str) -> None:
        self.post_blocking(kind)

    async def post_many(self, kind: str, count: int) -> None:
        group(self.app.signature(kind) for _ in range(count)).apply_async()

    async def roundtrip(self, config: str, timeout: float) -> None:
        self.results_app.send_task("noop").get(timeout=timeout)

    async def outstanding(self, posted: int) -> int:
        # Messages still in the list, and those delivered but not yet acknowledged (celery
        # acknowledges just before running a job, so a no-op one is done microseconds later).
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.llen(QUEUE)
            pipe.hlen("unacked")
            queued, unacked = pipe.execute()
        return int(queued) + int(unacked)

    def worker_commands(
        self, *, kind: str, processes: int, config: str, purpose: str
    ) -> list[WorkerCommand]:
        celery = str(Path(sys.executable).with_name("celery"))
        env = {"BENCH_REDIS_URL": self.url, "BENCH_RESULTS": "1" if purpose == "roundtrip" else "0"}
        commands = []
        for i in range(processes):
            argv = [celery, "-A", "celery_driver", "worker", "-Q", QUEUE, "-n", f"w{i}@%h"]
            argv += ["--loglevel", "WARNING"]
            if kind == "sleep":
                argv += ["--pool", "threads", "--concurrency", "100"]
            elif config == "tuned":
                argv += ["--pool", "solo"]
            if config == "tuned":
                argv += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
            commands.append(WorkerCommand(argv, env))
        return commands

    def _chain(self, message: list[Any]) -> Any:
        first, second, third = (
            self.app.signature(f"stage{n}", queue=queue)
            for n, queue in enumerate(PIPELINE_QUEUES, 1)
        )
        return chain(first.clone(args=(message,)), second, third)

    def pipeline_post_blocking(self, message: list[Any]) -> None:
        self._chain(message).apply_async()

    async def pipeline_post(self, message: list[Any]) -> None:
        self.pipeline_post_blocking(message)

    async def pipeline_post_many(self, messages: list[list[Any]]) -> None:
        group(self._chain(m) for m in messages).apply_async()

    def pipeline_workers(self, record: Path) -> list[WorkerCommand]:
        celery = str(Path(sys.executable).with_name("celery"))
        commands = []
        for n, queue in enumerate(PIPELINE_QUEUES, 1):
            argv = [celery, "-A", "celery_driver", "worker", "-Q", queue, "-n", f"s{n}@%h"]
            argv += ["--loglevel", "WARNING", "--pool", "solo"]
            argv += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
            env = {"BENCH_REDIS_URL": self.url, "BENCH_RESULTS": "0", PIPELINE_RECORD: str(record)}
            commands.append(WorkerCommand(argv, env))
        return commands


if __name__ == "__main__":
    main(CeleryPeer())

"""Celery (celery[redis]: kombu's Redis transport on redis-py with hiredis; a blocking client).

Celery keeps no results unless a result backend is configured, so the drains run without one
(its default) and the round trips with the Redis backend, whose `AsyncResult.get()` is pushed
over pub/sub. Default worker: `celery worker` (prefork pool, one child per core). Tuned (and the
no-op drains): `--pool solo` (jobs run in the worker process itself) with gossip, mingle and
heartbeats off. The sleep jobs (celery has no asyncio) are `time.sleep(0.01)` on `--pool threads
--concurrency 100`. Bulk: `group(...).apply_async()`, which still sends one message per job.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from _harness import QUEUE, SLEEP_SECONDS, Peer, WorkerCommand, main
from celery import Celery, group
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


if __name__ == "__main__":
    main(CeleryPeer())

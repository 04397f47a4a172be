"""aqueue, from the project's own virtualenv (/work/main/.venv: redis[hiredis], uvloop, msgpack).

Worker: `python -m aqueue worker aqueue_driver:listeners --queue bench --redis-url URL` at its
defaults (concurrency 16; prefetch adapts to the jobs' length), and `--concurrency 100` for the
10 ms jobs, as the scenario says. Nothing polls, so there is no interval to tune: the round
trips run it at its defaults too. (A no-op drain runs faster at 16 than at 100: a runner that
finds its next job already in the inbox takes it without a task switch.)
The client: `aqueue.Client`, `post`, `post_many`, `block_until_result`. Posts made at once
by many tasks go to Redis together (the client's own group commit, at its defaults).
Pipeline: one registry per stage (`stage1`..`stage3`), each stage's queue served by a worker
daemon of its own at its defaults (`--queue bench-1` ...); a listener's `outputs` name the next
stage's queue, and the daemon's forwarder posts each return value there. Inputs: `post_many`.
"""

from __future__ import annotations

import asyncio
import sys
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

from aqueue import Client, Context, Listeners

listeners = Listeners()


@listeners.listener
async def noop(msg: Any, ctx: Context) -> None:
    return None


@listeners.listener
async def sleep(msg: Any, ctx: Context) -> None:
    await asyncio.sleep(SLEEP_SECONDS)


# The pipeline: a registry per stage, served by a daemon each (`aqueue_driver:stage1` ...).
stage1, stage2, stage3 = Listeners(), Listeners(), Listeners()


@stage1.listener(outputs=[PIPELINE_QUEUES[1]])
async def first(msg: list[Any], ctx: Context) -> list[Any]:
    return pipeline_step(msg)


@stage2.listener(outputs=[PIPELINE_QUEUES[2]])
async def second(msg: list[Any], ctx: Context) -> list[Any]:
    return pipeline_step(msg)


@stage3.listener
async def third(msg: list[Any], ctx: Context) -> None:
    pipeline_end(msg)


class AqueuePeer(Peer):
    name = "aqueue"
    packages = ("aqueue", "redis", "hiredis", "msgpack", "anyio", "uvloop")

    async def open(self, url: str) -> None:
        await super().open(url)
        self.client = await Client(QUEUE, redis_url=url).__aenter__()
        self.pipeline = await Client(PIPELINE_QUEUES[0], redis_url=url).__aenter__()

    async def close(self) -> None:
        await self.pipeline.__aexit__(None, None, None)
        await self.client.__aexit__(None, None, None)

    async def post(self, kind: str) -> None:
        await self.client.post(None, functions=[kind])

    async def post_many(self, kind: str, count: int) -> None:
        await self.client.post_many([None] * count, functions=[kind])

    async def roundtrip(self, config: str, timeout: float) -> None:
        job_id = await self.client.post(None, functions=["noop"])
        await self.client.block_until_result(job_id, timeout=timeout)

    async def outstanding(self, posted: int) -> int:
        counts = await self.client.counts()
        return counts["queued"] + counts["scheduled"] + counts["active"]

    def worker_commands(
        self, *, kind: str, processes: int, config: str, purpose: str
    ) -> list[WorkerCommand]:
        argv = [sys.executable, "-m", "aqueue", "worker", "aqueue_driver:listeners"]
        argv += ["--queue", QUEUE, "--redis-url", self.url, "--log-level", "WARNING"]
        if kind == "sleep":  # the scenario's concurrency; no-op drains run at the defaults
            argv += ["--concurrency", "100"]
        return [WorkerCommand(argv) for _ in range(processes)]

    def pipeline_workers(self, record: Path) -> list[WorkerCommand]:
        commands = []
        for number, queue in enumerate(PIPELINE_QUEUES, 1):
            argv = [sys.executable, "-m", "aqueue", "worker", f"aqueue_driver:stage{number}"]
            argv += ["--queue", queue, "--redis-url", self.url, "--log-level", "WARNING"]
            commands.append(WorkerCommand(argv, {PIPELINE_RECORD: str(record)}))
        return commands

    async def pipeline_post(self, message: list[Any]) -> None:
        await self.pipeline.post(message)

    async def pipeline_post_many(self, messages: list[list[Any]]) -> None:
        await self.pipeline.post_many(messages)


if __name__ == "__main__":
    main(AqueuePeer())

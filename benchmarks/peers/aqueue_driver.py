"""aqueue, from the project's own virtualenv (/work/main/.venv: redis[hiredis], uvloop, msgpack).

Worker: `python -m aqueue worker aqueue_driver:listeners --queue bench --redis-url URL` at its
defaults (concurrency 16; prefetch adapts to the jobs' length), and `--concurrency 100` for the
10 ms jobs, as the scenario says. Nothing polls, so there is no interval to tune: the round
trips run it at its defaults too. (A no-op drain runs faster at 16 than at 100: a runner that
finds its next job already in the inbox takes it without a task switch.)
The client: `aqueue.Client`, `post`, `post_many`, `block_until_result`. Posts made at once
by many tasks go to Redis together (the client's own group commit, at its defaults).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from _harness import QUEUE, SLEEP_SECONDS, Peer, WorkerCommand, main

from aqueue import Client, Context, Listeners

listeners = Listeners()


@listeners.listener
async def noop(msg: Any, ctx: Context) -> None:
    return None


@listeners.listener
async def sleep(msg: Any, ctx: Context) -> None:
    await asyncio.sleep(SLEEP_SECONDS)


class AqueuePeer(Peer):
    name = "aqueue"
    packages = ("aqueue", "redis", "hiredis", "msgpack", "anyio", "uvloop")

    async def open(self, url: str) -> None:
        await super().open(url)
        self.client = await Client(QUEUE, redis_url=url).__aenter__()

    async def close(self) -> None:
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


if __name__ == "__main__":
    main(AqueuePeer())

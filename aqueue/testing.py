"""Helpers for tests — aqueue's own and its users': run a worker beside the test."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import anyio

from aqueue._redis.server import RedisServer
from aqueue._services.callbacks import CallbackConfig
from aqueue._worker.worker import Worker
from aqueue.config import ClientConfig, WorkerConfig
from aqueue.listeners import Listeners

__all__ = ["RedisServer", "run_until_idle", "running_worker"]

# Short leases and intervals, so tests about lapses and retries wait tenths of a second.
FAST = {"lease": 0.6, "heartbeat": 0.1, "reaper_interval": 0.1, "idle_wait": 0.2, "grace": 2.0}
FAST_CALLBACKS = CallbackConfig(timeout=0.5, attempts=3, backoff=0.05, lease=1.5, idle_wait=0.2)


@contextlib.asynccontextmanager
async def running_worker(
    listeners: Listeners,
    *,
    queue: str,
    redis_url: str | None,
    callbacks: CallbackConfig | None = FAST_CALLBACKS,
    client_config: ClientConfig | None = None,  # its own limits (redis_url and queue: these)
    **settings: Any,
) -> AsyncIterator[Worker]:
    """A worker serving `queue` while the block runs; drained and stopped after it."""
    config = WorkerConfig(queue=queue, **{**FAST, **settings})
    if client_config is not None:
        client_config = dataclasses.replace(client_config, queue=queue, redis_url=redis_url)
    worker = Worker(
        listeners, config, redis_url=redis_url, client_config=client_config, callbacks=callbacks
    )
    async with anyio.create_task_group() as tg:
        await tg.start(worker.run)
        try:
            yield worker
        finally:
            worker.stop()


async def run_until_idle(
    listeners: Listeners,
    *,
    queue: str,
    redis_url: str | None,
    callbacks: CallbackConfig | None = FAST_CALLBACKS,
    **settings: Any,
) -> Worker:
    """Run a worker until no job is ready or running (scheduled ones in the future wait)."""
    config = WorkerConfig(queue=queue, **{**FAST, **settings})
    worker = Worker(listeners, config, redis_url=redis_url, callbacks=callbacks)
    await worker.run(burst=True)
    return worker

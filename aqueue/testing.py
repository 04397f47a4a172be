"""Helpers for tests — aqueue's own and its users': run a worker beside the test, and wait on
a condition nothing announces (`until`)."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar, overload

import anyio

from aqueue._redis.server import RedisServer
from aqueue._services.callbacks import CallbackConfig
from aqueue._worker.worker import Worker
from aqueue.config import ClientConfig, WorkerConfig
from aqueue.listeners import Listeners

__all__ = ["RedisServer", "run_until_idle", "running_worker", "until"]

T = TypeVar("T")

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


@overload
async def until(
    predicate: Callable[[], Awaitable[T]],
    timeout: float = ...,
    *,
    interval: float = ...,
    what: str | None = ...,
) -> T: ...
@overload
async def until(
    predicate: Callable[[], T],
    timeout: float = ...,
    *,
    interval: float = ...,
    what: str | None = ...,
) -> T: ...
async def until(
    predicate: Callable[[], Any],
    timeout: float = 10.0,
    *,
    interval: float = 0.01,
    what: str | None = None,
) -> Any:
    """Wait until `predicate()` (a plain or an async function) returns something true; return it.

    For a condition that nothing announces (a count in Redis, a log line, a list a listener
    fills): it is asked every `interval` seconds. At `timeout` — which bounds a predicate that
    hangs, too — `TimeoutError` says what was awaited (`what`, or the predicate) and the last
    value it gave. An exception from the predicate is not retried: it is the test's failure.
    """
    last: object = _NOTHING
    with anyio.move_on_after(timeout):
        while True:
            value = predicate()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
            last = value
            await anyio.sleep(interval)
    seen = "it never answered" if last is _NOTHING else f"the last value was {last!r}"
    raise TimeoutError(f"waited {timeout} s for {what or _described(predicate)}; {seen}")


_NOTHING = object()  # no answer yet: a predicate still awaited at the deadline


def _described(predicate: Callable[[], Any]) -> str:
    """A function by its name; a lambda, which has none, by its source line."""
    name: str = getattr(predicate, "__qualname__", "")
    if name and not name.endswith("<lambda>"):
        return name
    try:
        return inspect.getsource(predicate).strip()
    except (OSError, TypeError):  # no source: typed at a prompt, or a callable object
        return repr(predicate)

"""A client's subscription to its queue's job events, from which its waiters hear outcomes.

Either a task of the client's own (`follow`, resubscribing after outages), or a share of a
service's SharedSubscription, joined only while someone of the client's own waits: a service's
clients of many queues then hold no connection each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import anyio

from aqueue._redis.backoff import follow
from aqueue._redis.pubsub import SharedSubscription
from aqueue._redis.store import Store
from aqueue.errors import RedisUnavailable

log = logging.getLogger(__name__)

Handler = Callable[[str, bytes | None], Awaitable[None]]  # data None: (re)subscribed
_SUBSCRIBE_WITHIN = 30  # seconds


class Subscription:
    def __init__(self, handle: Handler, shared: SharedSubscription | None = None) -> None:
        self._handle = handle
        self._shared = shared
        self._task: asyncio.Task[None] | None = None
        self._joined = False  # to the shared one
        self._subscribed = False  # confirmed at least once (since joining)
        self._lock = anyio.Lock()

    @property
    def listening(self) -> bool:
        """Subscribed now: an outcome published from here on will be heard."""
        if self._joined:
            return self._subscribed
        return self._subscribed and self._task is not None and not self._task.done()

    async def ensure(self, store: Store) -> None:
        """Subscribed, once this returns; RedisUnavailable if that took over 30 s."""
        if self._shared is not None:
            await self._join(self._shared, store)
            return
        if self._task is not None and not self._task.done():
            return
        async with self._lock:
            if self._task is None or self._task.done():
                # A task of the client's own rather than a task group's child: a client lives
                # from __aenter__ to __aexit__, which web frameworks and pytest fixtures run in
                # different tasks, so no task group could span it. stop() cancels it.
                started = anyio.Event()
                self._task = asyncio.get_running_loop().create_task(self._follow(store, started))
                self._task.add_done_callback(_log_crash)
                with anyio.move_on_after(_SUBSCRIBE_WITHIN) as waited:
                    await started.wait()
                if waited.cancelled_caught:
                    raise RedisUnavailable("could not subscribe to job events within 30 s")

    async def _join(self, shared: SharedSubscription, store: Store) -> None:
        async with self._lock:
            if not self._joined:
                with anyio.move_on_after(_SUBSCRIBE_WITHIN) as waited:
                    await shared.join(store.keys.events, self._heard)
                    self._joined = True
                if waited.cancelled_caught:
                    raise RedisUnavailable("could not subscribe to job events within 30 s")

    def leave(self, store: Store) -> None:
        """Leave the shared subscription, if joined (an own task stays until stop)."""
        if self._joined and self._shared is not None:
            self._shared.leave(store.keys.events, self._heard)
            self._joined = self._subscribed = False

    async def stop(self, store: Store) -> None:
        self.leave(store)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _follow(self, store: Store, started: anyio.Event) -> None:
        await follow(store, [store.keys.events], self._heard, started.set, "result")

    async def _heard(self, channel: str, data: bytes | None) -> None:
        if data is None:
            self._subscribed = True
        await self._handle(channel, data)


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("result subscription failed", exc_info=task.exception())

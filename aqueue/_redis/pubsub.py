"""One pub/sub connection shared by many channels, each joined and left as it is needed.

The HTTP service serves any number of queues; a subscription of each queue's own would hold a
connection of the pool per queue, and 64 queues streamed once wedged the service for good. So
its clients join this one instead, and leave when nobody of theirs waits any more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import anyio

from aqueue._redis.backoff import Backoff
from aqueue._redis.store import Store, Subscription
from aqueue.errors import RedisUnavailable

log = logging.getLogger(__name__)

Handler = Callable[[str, bytes | None], Awaitable[None]]


class SharedSubscription:
    """Channels joined by handlers, on one connection, kept across outages.

    A handler gets `(channel, data)` for each message, and `(channel, None)` once its channel is
    subscribed and after each resubscription (messages may have been lost before it: the
    handler re-reads the state it follows), as with `_backoff.follow`.

    `leave` is instant (safe in a `finally`): a task of the subscription's own unsubscribes
    the channels left soon after. redis-py may not send on a pub/sub connection subscribed to
    nothing while another task reads it, so the last channel left stays subscribed (its
    messages ignored) until another is joined: a join subscribes first, then drops.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._handlers: dict[str, list[Handler]] = {}
        self._confirmed: dict[str, anyio.Event] = {}  # of each channel sent, set once confirmed
        self._sent: set[str] = set()  # subscribed on the connection now open
        self._subscription: Subscription | None = None
        self._sending = anyio.Lock()
        self._left = anyio.Event()  # a channel lost its last handler
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def channels(self) -> int:
        """How many channels the connection is subscribed to (the joined, and those left)."""
        return len(self._sent)

    @property
    def joined(self) -> int:
        """How many channels have handlers."""
        return len(self._handlers)

    async def join(self, channel: str, handle: Handler) -> None:
        """Deliver `channel`'s messages to `handle` from now on; returns once it is subscribed
        and `handle(channel, None)` has run."""
        self._handlers.setdefault(channel, []).append(handle)
        try:
            if not self._tasks or any(task.done() for task in self._tasks):
                await self.aclose()
                # Tasks of its own, as a client's listener is: the service's lifetime (an
                # aiohttp cleanup context) spans tasks that no task group could.
                loop = asyncio.get_running_loop()
                self._tasks = [loop.create_task(self._run()), loop.create_task(self._tidy())]
                for task in self._tasks:
                    task.add_done_callback(_log_crash)
            confirmed = self._confirmed.setdefault(channel, anyio.Event())
            if not confirmed.is_set():
                await self._send()
                await confirmed.wait()  # by then _relay has given every handler its None
                return
        except BaseException:
            self.leave(channel, handle)
            raise
        await handle(channel, None)  # subscribed already: from now on nothing is missed

    def leave(self, channel: str, handle: Handler) -> None:
        handlers = self._handlers.get(channel, [])
        with contextlib.suppress(ValueError):
            handlers.remove(handle)
        if not handlers and self._handlers.pop(channel, None) is not None:
            self._left.set()

    async def aclose(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _tidy(self) -> None:
        while True:
            await self._left.wait()
            self._left = anyio.Event()
            with contextlib.suppress(RedisUnavailable):  # _run's reading notices it too
                await self._send()

    async def _send(self) -> None:
        """Subscribe the channels joined since, then drop those left (see the class)."""
        async with self._sending:
            subscription = self._subscription
            if subscription is None:  # connecting: _run subscribes to every channel joined
                return
            joined = [c for c in self._handlers if c not in self._sent]
            if joined:
                await subscription.add(*joined)
                self._sent.update(joined)
            left = [c for c in self._sent if c not in self._handlers]
            if len(left) == len(self._sent):
                left = left[1:]  # never subscribed to nothing (see the class)
            if left:
                self._sent.difference_update(left)
                for channel in left:
                    self._confirmed.pop(channel, None)
                await subscription.drop(*left)

    async def _run(self) -> None:
        backoff = Backoff()
        while self._handlers:  # (when none is left after an outage, the next join restarts it)
            try:
                async with contextlib.AsyncExitStack() as stack:
                    async with self._sending:
                        channels = list(self._handlers)
                        subscription = await stack.enter_async_context(
                            self._store.subscribe(*channels)
                        )
                        self._subscription, self._sent = subscription, set(channels)
                    try:
                        await self._send()  # those joined while it connected
                        await self._relay(subscription, backoff)
                    finally:
                        self._subscription, self._sent = None, set()
            except RedisUnavailable as exc:
                log.warning("shared subscription lost, retrying in %.2f s: %s", backoff.delay, exc)
                await backoff.sleep()

    async def _relay(self, subscription: Subscription, backoff: Backoff) -> None:
        while True:
            item = await subscription.get(timeout=None)
            if item is None:
                continue
            channel, data = item
            for handle in list(self._handlers.get(channel, ())):
                try:
                    await handle(channel, data)
                except RedisUnavailable:  # could not re-read: resubscribe, and read again
                    raise
                except Exception:  # one queue's handler must not stop the others'
                    log.exception("a handler of %s failed", channel)
            if data is None:
                backoff.reset()
                confirmed = self._confirmed.get(channel)
                if confirmed is not None:
                    confirmed.set()


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("shared subscription failed", exc_info=task.exception())

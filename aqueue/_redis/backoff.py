"""How loops ride out Redis outages: a backoff doubling from 50 ms, capped, reset on success;
and `follow`, a subscription kept alive across outages."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import anyio

from aqueue._redis.store import Store
from aqueue.errors import RedisUnavailable

log = logging.getLogger(__name__)


class Backoff:
    def __init__(self, first: float = 0.05, cap: float = 5.0) -> None:
        self.first, self.cap, self.delay = first, cap, first

    async def sleep(self) -> None:
        await anyio.sleep(self.delay)
        self.delay = min(self.delay * 2, self.cap)

    def reset(self) -> None:
        self.delay = self.first


async def follow(
    store: Store,
    channels: Sequence[str],
    handle: Callable[[str, bytes | None], Awaitable[None]],
    started: Callable[[], object],
    what: str,
) -> None:
    """Stay subscribed to `channels`, resubscribing with backoff after every outage.

    `handle(channel, data)` gets each message; `data` None means "(re)subscribed": messages may
    have been lost before it, so the handler re-reads whatever state it follows. `started()` is
    called once, after the first subscription is confirmed and handled.

    A message the handler cannot read (anyone may PUBLISH on a channel) is logged and passed
    over: it costs that message alone, never the subscription or the daemon around it.
    """
    first = True
    backoff = Backoff()
    while True:
        try:
            async with store.subscribe(*channels) as sub:
                while True:
                    item = await sub.get(timeout=None)
                    if item is None:
                        continue
                    channel, data = item
                    try:
                        await handle(channel, data)
                    except RedisUnavailable:
                        raise  # an outage: resubscribe, below
                    except Exception:
                        if data is None:
                            raise  # not a message: the handler's own re-read failed
                        log.exception(
                            "a message on %s could not be read, ignored: %r", channel, data[:200]
                        )
                        continue
                    if data is None:
                        backoff.reset()
                        if first:
                            started()
                            first = False
        except RedisUnavailable as exc:
            log.warning("%s subscription lost, retrying in %.2f s: %s", what, backoff.delay, exc)
            await backoff.sleep()

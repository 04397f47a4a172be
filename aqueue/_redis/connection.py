"""Where Redis is: an explicit URL, else `AQUEUE_REDIS_URL`, else the embedded server."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import anyio.to_thread

from aqueue._redis.backoff import Backoff
from aqueue._redis.server import EmbeddedRedis
from aqueue._redis.store import Store, close, connect, redis_errors
from aqueue.errors import RedisUnavailable

log = logging.getLogger(__name__)

CLOSE_WITHIN_S = 2.0  # closing the connections, however the run ended


def shown(url: str) -> str:
    """`url` as messages and logs may show it: its password masked."""
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hosts}"))


def embedded_directory() -> Path:
    return Path(os.environ.get("AQUEUE_HOME", ".aqueue")).resolve() / "redis"


@contextlib.asynccontextmanager
async def open_store(
    url: str | None,
    queue: str,
    max_connections: int,
    *,
    name: str,
    check: bool = True,
    pool_timeout: float | None = None,
) -> AsyncIterator[Store]:
    """A Store on the configured Redis, starting (and later stopping) the embedded one.

    With `check`, a Redis that cannot be reached fails here, at once, rather than later.
    `pool_timeout`: see `_store.connect`.
    """
    url = url or os.environ.get("AQUEUE_REDIS_URL") or None
    embedded: EmbeddedRedis | None = None
    if url is None:
        embedded = EmbeddedRedis(embedded_directory())
        url = await anyio.to_thread.run_sync(embedded.start)
        log.info("no Redis configured: using the embedded server at %s", url)
    redis = connect(url, max_connections, name, pool_timeout)
    try:
        if check:
            with redis_errors(f"connecting to {shown(url)}"):
                await redis.ping()
        async with Store.opened(redis, queue) as store:
            if check:
                await store.check_topology()
            yield store
    finally:
        # shielded: a run cancelled outright (a worker stopped while starting) still closes
        # its connections, rather than leave their sockets to the garbage collector
        with anyio.move_on_after(CLOSE_WITHIN_S, shield=True), contextlib.suppress(Exception):
            await close(redis)
        if embedded is not None:  # stopped even when a deadline cut the run short
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(embedded.stop)


async def until_ready(store: Store, what: str) -> None:
    """Until the store's Redis answers and can carry its queue (`Store.check_topology`), tried
    again with backoff: a daemon started while Redis is down waits for it, as a worker does.
    A ConfigError (it never will) is raised."""
    backoff = Backoff()
    while True:
        try:
            with redis_errors("connecting"):
                await store.redis.ping()
            await store.check_topology()
            return
        except RedisUnavailable as exc:
            log.warning("%s waits for Redis, retrying in %.2f s: %s", what, backoff.delay, exc)
            await backoff.sleep()

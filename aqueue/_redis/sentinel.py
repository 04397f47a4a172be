"""Redis Sentinel: `redis+sentinel://[user:password@]h1:p1,h2:p2/<master>[?db=N]`
(`rediss+sentinel://` for TLS), read into redis-py's own `Sentinel(...).master_for(...)`.

redis-py does the topology work: a connection asks the sentinels for the current master, a
READONLY or UNBLOCKED reply (a master demoted to replica) drops the connection with a
ConnectionError, which the pool retries, and a master that moved closes the pool's idle
connections. What is ours: the URL, a pool that waits for a free connection as the standalone
one does, and a connection that asks again on every reconnection (`MasterConnection`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool, SSLConnection
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection
from redis.exceptions import ConnectionError, ResponseError

from aqueue._redis.urls import split_hosts

SCHEMES: Final = {"redis+sentinel": False, "rediss+sentinel": True}  # scheme: TLS
# A sentinel that hangs is passed over for the next one, after this long (seconds)
SENTINEL_TIMEOUT: Final = 2.0
DEMOTED: Final = "READONLY You can't write against a read only replica"


@dataclass(frozen=True)
class SentinelURL:
    sentinels: tuple[tuple[str, int], ...]
    master: str  # the name the sentinels monitor it by
    db: int = 0
    username: str | None = None
    password: str | None = None  # the master's and its replicas' (the sentinels take none)
    ssl: bool = False


def parse_url(url: str) -> SentinelURL | None:
    """The Sentinel URL read; None when `url` is of another scheme. A ValueError says what is
    wrong with a Sentinel URL that cannot be read."""
    parts = split_hosts(url, SCHEMES, "a sentinel's")
    if parts is None:
        return None
    if not parts.path or "/" in parts.path:
        raise ValueError("the master's name goes in the path: redis+sentinel://HOST:PORT/<master>")
    if set(parts.options) - {"db"}:
        raise ValueError(f"unknown options {sorted(set(parts.options) - {'db'})}: only db is read")
    db = parts.options.get("db", ["0"])[-1]
    if not db.isdigit():
        raise ValueError(f"db must be a number, got {db!r}")
    return SentinelURL(
        parts.addresses, parts.path, int(db), parts.username, parts.password, parts.ssl
    )


class MasterConnection(SentinelManagedConnection):
    """A connection that asks the sentinels where the master is each time it (re)connects.

    redis-py's own asks only in `connect()`; but a dropped connection that is used again (its
    retry after READONLY, the next send) reconnects in `send_packed_command` to the address
    it last had: the demoted master, which answers READONLY again, every retry. And a
    script's READONLY from Redis 6 is read as the demotion it is.
    """

    async def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        if not self.is_connected:
            self.host, self.port = await self.connection_pool.get_master_address()
        await super().connect_check_health(check_health, retry_socket_connect)

    async def read_response(
        self,
        disable_decoding: bool = False,
        timeout: float | None = None,
        *,
        disconnect_on_error: Any = True,  # (redis-py's bases type these two differently)
        push_request: Any = False,
    ) -> Any:
        try:
            return await super().read_response(
                disable_decoding,
                timeout,
                disconnect_on_error=disconnect_on_error,
                push_request=push_request,
            )
        except ResponseError as exc:
            # Redis < 7 wraps a script's READONLY in its own words ("Error running script
            # ... -READONLY You can't write against a read only replica."), which redis-py
            # reads as a plain error, not as the demoted master it is
            if DEMOTED not in str(exc):
                raise
            await self.disconnect()
            raise ConnectionError("the master is now a replica") from exc


class MasterSSLConnection(MasterConnection, SSLConnection):
    pass


class BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """redis-py's Sentinel pool, waiting for a free connection (BlockingConnectionPool's
    `get_connection`) rather than failing at `max_connections`; closing it closes the
    connections to the sentinels too."""

    async def disconnect(self, inuse_connections: bool = True) -> None:
        await super().disconnect(inuse_connections)
        if inuse_connections:  # closing (a master that moved closes only the idle ones)
            await self.sentinel_manager.aclose()


def master_client(target: SentinelURL, **pool_options: Any) -> aioredis.Redis:
    """A client of the master that the sentinels name, rediscovered whenever it moves."""
    sentinels = Sentinel(
        target.sentinels,
        sentinel_kwargs={
            "socket_timeout": SENTINEL_TIMEOUT,
            "socket_connect_timeout": SENTINEL_TIMEOUT,
            "ssl": target.ssl,
        },
    )
    client: aioredis.Redis = sentinels.master_for(
        target.master,
        connection_pool_class=BlockingSentinelPool,
        connection_class=MasterSSLConnection if target.ssl else MasterConnection,
        db=target.db,
        username=target.username,
        password=target.password,
        ssl=target.ssl,
        **pool_options,
    )
    return client

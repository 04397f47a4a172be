"""Redis Cluster: `redis+cluster://[user:password@]h1:p1[,h2:p2...]` (`rediss+cluster://` for
TLS), read into redis-py's own asyncio `RedisCluster`.

redis-py does the topology work: it learns the slots from any node it is given, follows
MOVED and ASK, refreshes the map after a failover, and keeps sharded subscriptions on the node
that owns their slot. What is ours: the URL, a queue's node (for the direct connection and for
`aqueue status`), and the rules the scripts keep (see `Store._call`: every script declares its
queue's keys, and none runs while the queue's slot migrates).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Final

from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError, RedisClusterException, SlotNotCoveredError

from aqueue._redis.urls import split_hosts

SCHEMES: Final = {"redis+cluster": False, "rediss+cluster": True}  # scheme: TLS
POOL_WAIT_TIMED_OUT: Final = "No connection available."  # as redis-py's blocking pool says
NOT_A_CLUSTER: Final = "Cluster mode is not enabled"  # as redis-py says of a single Redis


@dataclass(frozen=True)
class ClusterURL:
    nodes: tuple[tuple[str, int], ...]  # where to start: any of them tells the rest
    username: str | None = None
    password: str | None = None
    ssl: bool = False


def parse_url(url: str) -> ClusterURL | None:
    """The cluster URL read; None when `url` is of another scheme. A ValueError says what is
    wrong with a cluster URL that cannot be read."""
    parts = split_hosts(url, SCHEMES, "a cluster node's")
    if parts is None:
        return None
    if parts.path not in ("", "0"):
        raise ValueError(f"a cluster has database 0 only: drop /{parts.path} from the URL")
    if parts.options:
        raise ValueError(f"a cluster URL takes no options, got {sorted(parts.options)}")
    return ClusterURL(parts.addresses, parts.username, parts.password, parts.ssl)


# Connections a node may have beyond the commands in flight: subscriptions hold one each
SUBSCRIPTION_ROOM: Final = 16


class BoundedCluster(RedisCluster):
    """redis-py's cluster client, whose commands wait for one of `max_connections` places, as
    the standalone pool's do (a wait of up to `pool_timeout` seconds, None: as long as it
    takes), where redis-py's own fail at once with MaxConnectionsError: 1,000 jobs awaited
    at once then failed."""

    def __init__(self, *, max_connections: int, pool_timeout: float | None, **options: Any):
        super().__init__(max_connections=max_connections + SUBSCRIPTION_ROOM, **options)
        self._places = asyncio.Semaphore(max_connections)
        self._pool_timeout = pool_timeout

    @contextlib.asynccontextmanager
    async def place(self) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self._pool_timeout):
                await self._places.acquire()
        except TimeoutError:
            raise ConnectionError(POOL_WAIT_TIMED_OUT) from None
        try:
            yield
        finally:
            self._places.release()

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self.place():
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> Any:
        if shard_hint:
            raise RedisClusterException("shard_hint is not supported on a cluster")
        return BoundedPipeline(self, transaction)  # type: ignore[abstract]  # (as redis-py does)


class BoundedPipeline(ClusterPipeline):
    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        assert isinstance(self.cluster_client, BoundedCluster)
        async with self.cluster_client.place():
            return await super().execute(raise_on_error, allow_redirections)


def cluster_client(target: ClusterURL, **options: Any) -> BoundedCluster:
    """A client of the whole cluster; `options` are the standalone pool's."""
    return BoundedCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
        username=target.username,
        password=target.password,
        ssl=target.ssl,
        max_connections=options.pop("max_connections"),
        pool_timeout=options.pop("timeout"),
        **options,
    )


def node_of(cluster: RedisCluster, key: str) -> ClusterNode:
    """The master that holds `key`'s slot now (as the client's slot map has it)."""
    try:
        node = cluster.get_node_from_key(key)
    except SlotNotCoveredError:
        node = None  # no map yet (the client reads it on its first command), or a hole in it
    if node is None:
        raise ConnectionError(f"no node of the cluster is known to serve the slot of {key!r}")
    return node


async def master_of(cluster: RedisCluster, key: str) -> ClusterNode:
    """`node_of`, once the client has read the slot map (it does on its first command)."""
    await cluster.initialize()  # (a no-op once done)
    return node_of(cluster, key)


def connection_to(cluster: RedisCluster, key: str) -> Callable[[], AbstractConnection]:
    """Makes a connection to the master of `key`'s slot, found anew each time it is called
    (so a direct connection dropped after MOVED reconnects to the slot's new owner)."""

    def connect() -> AbstractConnection:
        node = node_of(cluster, key)
        connection: AbstractConnection = node.connection_class(**node.connection_kwargs)
        return connection

    return connect

"""A Sentinel URL wherever a Redis URL goes: the client and worker, the CLI, the HTTP service;
and the fast path (`Direct`) lands on the master the sentinels name."""

from __future__ import annotations

import anyio
import pytest
import redis
from redis.asyncio.sentinel import SentinelManagedConnection

from aqueue import Client, JobStatus, RedisUnavailable
from aqueue._http.service import HttpConfig
from aqueue._redis.direct import Direct
from aqueue.testing import run_until_idle

from ..topologies import MASTER_NAME, SentinelSet
from .test_cli import aqueue
from .test_connections import _listeners  # an echo listener
from .test_http import serving


async def test_post_work_and_result_through_a_sentinel_url(
    sentinel_set: SentinelSet, queue: str
) -> None:
    url = f"{sentinel_set.url}?db=0"
    async with Client(queue, redis_url=url) as client:
        ids = [await client.post({"n": n}) for n in range(20)]
        await run_until_idle(_listeners(), queue=queue, redis_url=url)
        assert [await client.block_until_result(i, timeout=5) for i in ids] == [
            {"n": n} for n in range(20)
        ]
        # the fast path's own connection went to the master, and carried the posts
        direct = client.store._direct
        assert isinstance(direct, Direct)
        assert isinstance(direct._connection, SentinelManagedConnection)
        assert direct._connection.port == sentinel_set.master.port
    # the jobs are on the master (and replicated), not on a server the URL names
    master = await _master_keys(sentinel_set, queue)
    assert master > 0


async def _master_keys(sentinel_set: SentinelSet, queue: str) -> int:
    async with Client(queue, redis_url=sentinel_set.master.url) as plain:
        return len([k async for k in plain.store.redis.scan_iter(match=f"*{queue}*")])


async def test_the_cli_and_the_http_service_take_a_sentinel_url(
    sentinel_set: SentinelSet, queue: str
) -> None:
    code, out, err = await aqueue(
        "post", '{"from": "cli"}', "--redis-url", sentinel_set.url, "--queue", queue
    )
    assert code == 0, err
    config = HttpConfig(port=0, redis_url=sentinel_set.url, queue=queue, keepalive=0.3)
    async with serving(config) as api:
        created = await api.post({"msg": {"from": "http"}})
    await run_until_idle(_listeners(), queue=queue, redis_url=sentinel_set.url)
    async with Client(queue, redis_url=sentinel_set.url) as client:
        assert await client.block_until_result(out.strip(), timeout=5) == {"from": "cli"}
        assert await client.block_until_result(created["id"], timeout=5) == {"from": "http"}
        assert (await client.get_job(created["id"])).status is JobStatus.COMPLETE


async def test_an_unknown_master_name_is_a_clear_error_at_once(
    sentinel_set: SentinelSet, queue: str
) -> None:
    url = sentinel_set.url.replace(MASTER_NAME, "no-such-master")
    with pytest.raises(RedisUnavailable, match="No master found for 'no-such-master'"):
        async with Client(queue, redis_url=url):
            pass


async def test_a_master_demoted_under_open_connections_is_left_for_the_new_one(
    private_sentinel_set: SentinelSet, queue: str
) -> None:
    """The roles swap under open connections, and the sentinels learn it at once: the next
    call hears READONLY from the old master, drops its connection and goes to the new one."""
    servers = private_sentinel_set
    async with Client(queue, redis_url=servers.url) as client:
        first = await client.post({"n": 0})  # the fast path and the pool hold connections now
        await anyio.to_thread.run_sync(_swap_roles, servers)
        second = await client.post({"n": 1})  # not RedisUnavailable: READONLY was ridden out
        await client.post({"n": 2})  # the fast path's own connection, dropped, reconnected
        direct = client.store._direct
        assert isinstance(direct, Direct)
        assert isinstance(direct._connection, SentinelManagedConnection)
        assert direct._connection.port == servers.replica.port  # the new master
        await run_until_idle(_listeners(), queue=queue, redis_url=servers.url)
        assert await client.block_until_result(second, timeout=5) == {"n": 1}
        assert await client.block_until_result(first, timeout=5) == {"n": 0}  # replicated


def _swap_roles(servers: SentinelSet) -> None:
    """Promote the replica, demote the master (keeping its clients' connections, as Sentinel's
    own reconfiguration would not), and re-point the sentinels at the new master."""
    old, new = servers.master, servers.replica
    with redis.Redis(port=new.port) as promoted, redis.Redis(port=old.port) as demoted:
        promoted.replicaof("NO", "ONE")
        demoted.replicaof("127.0.0.1", str(new.port))
    for sentinel in servers.sentinels:
        with redis.Redis(port=sentinel.port) as s:
            s.sentinel_remove(MASTER_NAME)
            s.sentinel_monitor(MASTER_NAME, "127.0.0.1", new.port, 2)

"""On a cluster, the parts that are a cluster's own: durable writes wait on the replica of the
queue's own master (WAIT on the connection of the write, which a cluster pipeline would send
to any node), concurrent ones too; a paused replica makes them raise NotDurable; a worker's
finishes wait with the `replicas` setting."""

from __future__ import annotations

import anyio
import anyio.to_thread
import pytest
import redis
import redis.asyncio as aioredis

from aqueue import Client, ClientConfig, Context, JobStatus, Listeners, NotDurable
from aqueue._redis.keys import Keys
from aqueue.testing import RedisServer, running_worker

from ..topologies import Cluster
from .test_durable import paused


def _replica_of_queue(cluster: Cluster, queue: str) -> RedisServer:
    """The replica of the master that holds the queue's slot."""
    with redis.RedisCluster(host="127.0.0.1", port=cluster.masters[0].port) as client:
        master = client.get_node_from_key(Keys(queue).stats)
    for node in cluster.nodes:
        with redis.Redis(port=node.port) as server:
            info = server.info("replication")
        if info["role"] == "slave" and int(info["master_port"]) == master.port:
            return node
    raise AssertionError(f"no replica of {master.name} in the cluster")


async def _on(node: RedisServer, key: str) -> bool:
    async with aioredis.Redis(port=node.port) as r:
        await r.execute_command("READONLY")  # type: ignore[no-untyped-call]  # a replica of a cluster answers MOVED without it
        return bool(await r.exists(key))


async def test_durable_posts_return_once_the_replica_of_the_queue_s_master_has_them(
    redis_cluster: Cluster, queue: str
) -> None:
    replica = await anyio.to_thread.run_sync(_replica_of_queue, redis_cluster, queue)
    async with Client(queue, redis_url=redis_cluster.url) as client:
        for _ in range(5):
            job_id = await client.post({"n": 1}, durable=True)
            assert await _on(replica, Keys(queue).job(job_id))
        ids: list[str] = []

        async def post(n: int) -> None:  # at once: most find the direct connection busy
            ids.append(await client.post(n, durable=True))

        async with anyio.create_task_group() as tg:
            for n in range(20):
                tg.start_soon(post, n)
        assert len(ids) == 20
        assert [await _on(replica, Keys(queue).job(i)) for i in ids] == [True] * 20


async def test_a_paused_replica_makes_a_durable_post_raise_naming_what_was_met(
    redis_cluster: Cluster, queue: str
) -> None:
    replica = await anyio.to_thread.run_sync(_replica_of_queue, redis_cluster, queue)
    config = ClientConfig(queue=queue, redis_url=redis_cluster.url, durable_timeout=0.2)
    async with Client(config=config) as client:
        await client.post("warm")  # the slot map read, and the direct connection open
        with paused(replica):
            with anyio.fail_after(5), pytest.raises(NotDurable) as short:
                await client.post({"n": 1}, durable=True)
        assert "0 of 1 replicas acknowledged within 0.2 s" in str(short.value)
        [job_id] = short.value.job_ids
        assert (await client.get_job(job_id)).status is JobStatus.QUEUED  # posted all the same


async def test_the_replicas_setting_makes_a_worker_s_finishes_durable(
    redis_cluster: Cluster, queue: str
) -> None:
    replica = await anyio.to_thread.run_sync(_replica_of_queue, redis_cluster, queue)
    listeners = Listeners()

    @listeners.listener
    async def double(msg: int, ctx: Context) -> int:
        return msg * 2

    async with (
        Client(queue, redis_url=redis_cluster.url) as client,
        running_worker(listeners, queue=queue, redis_url=redis_cluster.url, replicas=1),
    ):
        ids = await client.post_many(range(10))
        assert [await client.block_until_result(i, timeout=20) for i in ids] == [
            n * 2 for n in range(10)
        ]
        async with aioredis.Redis(port=replica.port) as r:
            await r.execute_command("READONLY")  # type: ignore[no-untyped-call]
            statuses = [await r.hget(Keys(queue).job(i), "status") for i in ids]
        assert statuses == [b"complete"] * 10  # the replica had each before its result was read

"""Posts made at the same time go to Redis together (aqueue/_redis/coalesce.py): an app that posts
from many tasks at once gets bulk rates, and every post still gets its own jobs and ids."""

from __future__ import annotations

import os
from typing import Any

import anyio
import redis.asyncio

from aqueue import Client, JobStatus
from aqueue.testing import RedisServer, until


async def _post_calls(client: Client) -> int:
    """EVALSHA calls Redis has run since its counters were last reset."""
    stats = await client.store.redis.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def test_five_hundred_posts_at_once_take_a_few_calls_and_each_gets_its_job(
    private_redis: RedisServer, queue: str
) -> None:
    async with Client(queue, redis_url=private_redis.url) as client:
        await client.store.redis.config_resetstat()
        ids: dict[int, str] = {}

        async def post(i: int) -> None:
            ids[i] = await client.post(i)

        async with anyio.create_task_group() as posts:
            for i in range(500):
                posts.start_soon(post, i)
        assert await _post_calls(client) <= 10
        assert len(set(ids.values())) == 500
        for i in (0, 1, 250, 499):
            assert (await client.get_job(ids[i])).msg == i
        assert (await client.counts())["queued"] == 500


async def test_posts_with_different_options_keep_their_own(client: Client) -> None:
    posted: dict[str, str] = {}

    async def post(name: str, options: dict[str, Any]) -> None:
        posted[name] = await client.post(name, **options)

    async with anyio.create_task_group() as posts:
        for i in range(20):
            posts.start_soon(post, f"plain {i}", {})
            posts.start_soon(post, f"urgent {i}", {"priority": 50})
            posts.start_soon(post, f"later {i}", {"delay": 60})
            posts.start_soon(post, f"keyed {i}", {"key": "one-key"})
    assert (await client.get_job(posted["urgent 7"])).priority == 50
    assert (await client.get_job(posted["plain 7"])).priority == 0
    assert (await client.get_job(posted["later 7"])).status is JobStatus.SCHEDULED
    assert len({posted[f"keyed {i}"] for i in range(20)}) == 1  # one job for the key
    counts = await client.counts()
    assert (counts["queued"], counts["scheduled"]) == (41, 20)


async def test_batches_of_jobs_posted_at_once_are_never_split_or_mixed(client: Client) -> None:
    results: dict[int, list[str]] = {}

    async def post_many(n: int) -> None:
        results[n] = await client.post_many([f"{n}-{i}" for i in range(600)])

    async with anyio.create_task_group() as posts:
        for n in range(4):
            posts.start_soon(post_many, n)
    for n, ids in results.items():
        assert len(ids) == 600
        for i in (0, 299, 599):
            assert (await client.get_job(ids[i])).msg == f"{n}-{i}"
    assert (await client.counts())["queued"] == 2400


async def test_a_post_cancelled_while_it_waits_is_not_sent_and_the_others_are(
    private_redis: RedisServer, queue: str
) -> None:
    async with Client(queue, redis_url=private_redis.url) as client:
        await client.post("warm-up")
        sent: dict[int, str] = {}
        scopes: dict[int, anyio.CancelScope] = {}

        async def post(i: int) -> None:
            with anyio.CancelScope() as scopes[i]:
                sent[i] = await client.post(i)

        await client.store.redis.client_pause(300)  # the first post waits in Redis...
        with anyio.fail_after(10):
            async with anyio.create_task_group() as posts:
                for i in range(10):
                    posts.start_soon(post, i)
                await anyio.sleep(0.1)  # ...and the other nine queue up behind it
                for i in (1, 2, 5):  # the next batch's leader among them
                    scopes[i].cancel()
        assert sorted(sent) == [0, 3, 4, 6, 7, 8, 9]
        assert (await client.counts())["queued"] == 1 + 7
        for i, job_id in sent.items():
            assert (await client.get_job(job_id)).msg == i


async def test_a_client_closed_with_posts_on_their_way_leaves_no_connection_open(
    private_redis: RedisServer, queue: str
) -> None:
    admin = redis.asyncio.Redis.from_url(private_redis.url)
    name = f"aqueue-client-{os.getpid()}"
    try:
        client = await Client(queue, redis_url=private_redis.url).__aenter__()
        await client.post("warm-up")
        big = b"x" * (1 << 20)  # one call each: a batch of them is on its way a while
        async with anyio.create_task_group() as posts:
            for _ in range(30):
                posts.start_soon(client.post, big)
            await until(lambda: client._posts and client._posts._batches, interval=0.001)
            posts.cancel_scope.cancel()  # (a web server shutting down cancels its handlers)
        await client.__aexit__(None, None, None)
        # no task is left that could reconnect, so its connections are closed for good...
        assert [t.name for t in anyio.get_running_tasks() if t != anyio.get_current_task()] == []

        async def closed() -> bool:
            return [c for c in await admin.client_list() if c.get("name") == name] == []

        await until(closed)  # ...once Redis has seen them close
        assert (await admin.dbsize()) > 0  # (the jobs the batch carried were posted)
    finally:
        await admin.aclose()

"""Redis is killed and restarted (AOF on) while workers and a client are busy: everything the
client was told was accepted still completes, and the workers carry on without a restart."""

from __future__ import annotations

import signal

import anyio
import pytest

from aqueue import Client, JobStatus, RedisUnavailable
from aqueue.testing import RedisServer, until

from .conftest import StartWorker

pytestmark = pytest.mark.chaos


async def test_workers_and_clients_ride_out_a_redis_crash_and_lose_nothing_accepted(
    private_redis: RedisServer, queue: str, start_worker: StartWorker
) -> None:
    url = private_redis.url
    accepted: list[str] = []
    refused = 0

    async def post_steadily(client: Client, count: int) -> None:
        nonlocal refused
        for n in range(count):
            try:
                accepted.append(await client.post({"seconds": 0.01, "n": n}, functions=["slow"]))
            except RedisUnavailable:
                refused += 1  # not accepted: the caller knows, and nothing is owed
            await anyio.sleep(0.005)

    async with Client(queue, redis_url=url) as client:
        async with start_worker(queue, url) as one, start_worker(queue, url) as two:
            async with anyio.create_task_group() as tg:
                tg.start_soon(post_steadily, client, 400)
                await until(lambda: len(accepted) >= 100, 20)  # mid-run
                await anyio.to_thread.run_sync(private_redis.kill)  # a crash: SIGKILL
                await anyio.sleep(1.0)  # an outage longer than the workers' leases
                await anyio.to_thread.run_sync(private_redis.start)
            with anyio.fail_after(60):
                for job_id in accepted:
                    await client.block_until_result(job_id)
            for worker in (one, two):
                assert worker.process.returncode is None  # rode it out, no restart
                assert "Redis unreachable" in worker.text()  # and said so
                worker.signal(signal.SIGTERM)
                assert await worker.wait() == 0
        assert len(accepted) + refused == 400 and len(accepted) >= 100
        for job_id in accepted:
            assert (await client.get_job(job_id)).status is JobStatus.COMPLETE

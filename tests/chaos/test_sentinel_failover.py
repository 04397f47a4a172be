"""Sentinel fails the master over mid-run (a SIGKILL, or a SENTINEL FAILOVER that demotes it
with its connections open): a worker process and a client carry on by themselves on the new
master, every job whose post was acknowledged runs and completes, and a job posted after the
failover completes too. Replication is asynchronous and AOF fsyncs every second (the
fixture's `appendfsync everysec`): what a failover lost is counted and printed."""

from __future__ import annotations

import collections
import signal
from pathlib import Path

import anyio
import pytest
import redis

from aqueue import Client, JobNotFound, JobStatus, RedisUnavailable
from aqueue.testing import until

from ..topologies import MASTER_NAME, SentinelSet
from .conftest import StartWorker

pytestmark = pytest.mark.chaos

POSTS = 300
LEASE_PAST_THE_OUTAGE = ["--lease", "10", "--heartbeat", "1"]


def _fail_over(servers: SentinelSet, how: str) -> None:
    if how == "kill":
        servers.master.kill()
    else:  # coordinated: the old master is demoted to a replica (Sentinel's reconfiguration
        # kills its clients' connections in the same transaction: no READONLY reaches them)
        with redis.Redis(port=servers.sentinels[0].port) as sentinel:
            sentinel.sentinel_failover(MASTER_NAME)


@pytest.mark.parametrize("how", ["kill", "sentinel-failover"])
async def test_a_failover_mid_run_is_ridden_out_and_every_acknowledged_job_runs(
    private_sentinel_set: SentinelSet,
    queue: str,
    start_worker: StartWorker,
    tmp_path: Path,
    how: str,
) -> None:
    servers, url, runs = private_sentinel_set, private_sentinel_set.url, tmp_path / "runs"
    accepted: list[str] = []
    refused = 0

    async def post_steadily(client: Client) -> None:
        nonlocal refused
        for n in range(POSTS):
            try:
                accepted.append(
                    await client.post(
                        {"log": str(runs), "seconds": 0.005, "n": n}, functions=["record"]
                    )
                )
            except RedisUnavailable:
                refused += 1  # not accepted: the caller knows, and nothing is owed
            await anyio.sleep(0.005)

    async def await_early_results(client: Client) -> None:
        """A client awaiting results across the failover."""
        await until(lambda: len(accepted) >= 50, 20)
        for job_id in list(accepted):
            await _result(client, job_id)

    async with Client(queue, redis_url=url) as client:
        # leases outlast the failover: a job is run again only if the failover lost its ack
        async with start_worker(queue, url, *LEASE_PAST_THE_OUTAGE) as worker:
            old = servers.master_port()
            async with anyio.create_task_group() as tg:
                tg.start_soon(post_steadily, client)
                tg.start_soon(await_early_results, client)
                await until(lambda: len(accepted) >= 100, 20)  # mid-run
                started = anyio.current_time()
                await anyio.to_thread.run_sync(_fail_over, servers, how)
                new = await anyio.to_thread.run_sync(servers.wait_for_failover, old)
                took = anyio.current_time() - started
            after = await client.post({"log": str(runs)}, functions=["record"])
            with anyio.fail_after(60):
                assert await client.block_until_result(after) == after
                lost = [job_id for job_id in accepted if not await _result(client, job_id)]
            assert worker.process.returncode is None  # rode it out, no restart
            worker.signal(signal.SIGTERM)
            assert await worker.wait() == 0
        ran = collections.Counter(runs.read_text().split())
        twice = sorted(job_id for job_id, n in ran.items() if n > 1)
        print(
            f"\n{how}: {len(accepted)} posts acknowledged, {refused} refused; "
            f"master {old} -> {new.port} in {took:.1f} s; lost {len(lost)}, ran twice {len(twice)}"
        )
        assert new.port != old and len(accepted) + refused == POSTS and len(accepted) >= 100
        assert not lost, f"acknowledged posts lost in the failover: {lost}"
        assert not twice, f"jobs run more than once: {twice}"
        assert set(ran) == {*accepted, after}
        for job_id in accepted:
            assert (await client.get_job(job_id)).status is JobStatus.COMPLETE


async def _result(client: Client, job_id: str) -> bool:
    """Its result came (True), or the job is gone (False: its post was lost with the old
    master). An outage reaching here fails the test: the client rides them out itself."""
    try:
        assert await client.block_until_result(job_id) == job_id
    except JobNotFound:
        return False
    return True

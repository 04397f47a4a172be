"""A Redis Cluster changes under a busy queue, on a cluster of the test's own: the master of
the queue's slot is failed over mid-run (a SIGKILL, or a CLUSTER FAILOVER on its replica),
and the slot is resharded to another master while jobs are posted, claimed and finished.

A worker process and a client carry on by themselves. Durable posts and finishes (WAIT for
the slot's replica) lose nothing they acknowledged; without, what a failover lost is counted
and printed (replication is asynchronous). A migration loses nothing: no script runs while
the slot migrates (Redis answers TRYAGAIN, waited out), so none is half-applied, and the
queue's figures add up after it."""

from __future__ import annotations

import collections
import signal
from pathlib import Path

import anyio
import pytest
import redis
from redis.crc import key_slot

from aqueue import Client, JobStatus, NotDurable, RedisUnavailable
from aqueue._redis.keys import Keys
from aqueue.testing import RedisServer, until

from ..topologies import Cluster
from .conftest import StartWorker, WorkerProcess
from .test_sentinel_failover import _result

pytestmark = pytest.mark.chaos

POSTS = 300
# Leases that outlast a failover or a migration: a job is run again only if its ack was lost
LEASE_PAST_THE_OUTAGE = ["--lease", "10", "--heartbeat", "1"]


def _slot(queue: str) -> int:
    return key_slot(Keys(queue).stats.encode())


def _fail_over(cluster: Cluster, master: RedisServer, how: str) -> None:
    if how == "kill":
        master.kill()
    else:  # coordinated: the replica takes over once it has caught up, the master steps down
        with redis.Redis(port=cluster.replica_of(master).port) as replica:
            replica.cluster("failover")


class Posting:
    """A client posting `record` jobs steadily, and what became of each post."""

    def __init__(self, client: Client, runs: Path, durable: bool) -> None:
        self.client, self.runs, self.durable = client, runs, durable
        self.accepted: list[str] = []  # acknowledged (durably, if asked)
        self.unconfirmed: list[str] = []  # posted, but NotDurable: the job stands
        self.refused = 0  # RedisUnavailable: not accepted, and the caller knows

    async def post(self, n: int | None = None) -> str:
        return await self.client.post(
            {"log": str(self.runs), "seconds": 0.005, "n": n},
            functions=["record"],
            durable=self.durable,
        )

    async def steadily(self, count: int) -> None:
        for n in range(count):
            try:
                self.accepted.append(await self.post(n))
            except NotDurable as exc:
                self.unconfirmed += exc.job_ids
            except RedisUnavailable:
                self.refused += 1
            await anyio.sleep(0.005)

    async def await_results(self, after: int) -> None:
        """A client awaiting results across the change."""
        await until(lambda: len(self.accepted) >= after, 20)
        for job_id in list(self.accepted):
            await _result(self.client, job_id)

    def twice(self) -> list[str]:
        """The jobs that ran more than once (the listener writes a line per run)."""
        ran = collections.Counter(self.runs.read_text().split())
        return sorted(job_id for job_id, n in ran.items() if n > 1)

    def ran(self) -> set[str]:
        return set(self.runs.read_text().split())


async def _stop(worker: WorkerProcess) -> None:
    assert worker.process.returncode is None  # rode it out, no restart
    worker.signal(signal.SIGTERM)
    assert await worker.wait() == 0


@pytest.mark.parametrize(
    ("how", "durable"),
    [
        pytest.param("kill", True, id="kill-durable"),
        pytest.param("cluster-failover", False, id="cluster-failover-default"),
        # CI's bounded sample leaves these two out (pyproject's addopts: -m "not slow")
        pytest.param("kill", False, id="kill-default", marks=pytest.mark.slow),
        pytest.param(
            "cluster-failover", True, id="cluster-failover-durable", marks=pytest.mark.slow
        ),
    ],
)
async def test_a_failover_of_the_queues_master_mid_run_is_ridden_out(
    private_cluster: Cluster,
    queue: str,
    start_worker: StartWorker,
    tmp_path: Path,
    how: str,
    durable: bool,
) -> None:
    cluster, url, slot = private_cluster, private_cluster.url, _slot(queue)
    old = cluster.master_of_slot(slot)
    finishes = ["--replicas", "1"] if durable else []  # every finish waits for the replica
    async with Client(queue, redis_url=url) as client:
        posting = Posting(client, tmp_path / "runs", durable)
        async with start_worker(queue, url, *LEASE_PAST_THE_OUTAGE, *finishes) as worker:
            async with anyio.create_task_group() as tg:
                tg.start_soon(posting.steadily, POSTS)
                tg.start_soon(posting.await_results, 50)
                await until(lambda: len(posting.accepted) >= 100, 20)  # mid-run
                started = anyio.current_time()
                await anyio.to_thread.run_sync(_fail_over, cluster, old, how)
                new = await anyio.to_thread.run_sync(cluster.wait_for_failover, slot, old)
                took = anyio.current_time() - started
                if how == "kill":  # restarted, as a supervisor would: it rejoins as a replica
                    await anyio.to_thread.run_sync(old.start)
            after = await posting.post()
            with anyio.fail_after(60):
                assert await client.block_until_result(after) == after
                lost = [i for i in posting.accepted if not await _result(client, i)]
                standing = [i for i in posting.unconfirmed if await _result(client, i)]
            await _stop(worker)
        done = [await client.get_job(i) for i in {*posting.accepted, *standing} - set(lost)]
    twice = posting.twice()
    print(
        f"\n{how}, {'durable' if durable else 'default'}: {len(posting.accepted)} posts "
        f"acknowledged, {len(posting.unconfirmed)} not durable ({len(standing)} of them ran), "
        f"{posting.refused} refused; slot {slot} master :{old.port} -> :{new.port} in "
        f"{took:.1f} s; lost {len(lost)}, ran twice {len(twice)}"
    )
    assert new.port != old.port and len(posting.accepted) >= 100
    assert len(posting.accepted) + len(posting.unconfirmed) + posting.refused == POSTS
    if durable:
        assert not lost, f"durably acknowledged posts lost in the failover: {lost}"
    assert not twice, f"jobs run more than once: {twice}"
    assert posting.ran() == {*posting.accepted, *standing, after} - set(lost)
    assert {job.status for job in done} == {JobStatus.COMPLETE}


async def test_resharding_a_busy_queues_slot_loses_and_doubles_nothing(
    private_cluster: Cluster, queue: str, start_worker: StartWorker, tmp_path: Path
) -> None:
    cluster, url, slot = private_cluster, private_cluster.url, _slot(queue)
    source = cluster.master_of_slot(slot)
    target = next(m for m in cluster.masters if m.port != source.port)
    tryagain_before = await anyio.to_thread.run_sync(cluster.errors, "TRYAGAIN")
    async with Client(queue, redis_url=url) as client:
        posting = Posting(client, tmp_path / "runs", durable=False)
        # leases outlast the migration, which holds up heartbeats as it holds up every call
        async with start_worker(queue, url, *LEASE_PAST_THE_OUTAGE) as worker:
            async with anyio.create_task_group() as tg:
                tg.start_soon(posting.steadily, POSTS)
                tg.start_soon(posting.await_results, 50)
                await until(lambda: len(posting.accepted) >= 50, 20)  # mid-run
                started = anyio.current_time()
                # a few keys at a time, 50 ms apart: calls meet the slot half-moved
                moved = await anyio.to_thread.run_sync(
                    lambda: cluster.migrate_slot(slot, target, batch=4, pause=0.05)
                )
                took = anyio.current_time() - started
                during = len(posting.accepted)
            after = await posting.post()
            with anyio.fail_after(60):
                assert await client.block_until_result(after) == after
                lost = [i for i in posting.accepted if not await _result(client, i)]
            await _stop(worker)
        snapshot = await client.store.snapshot()
        statuses = {(await client.get_job(i)).status for i in [*posting.accepted, after]}
    tryagain = await anyio.to_thread.run_sync(cluster.errors, "TRYAGAIN") - tryagain_before
    owners = {cluster.master_of_slot(slot, node).port for node in cluster.masters}
    twice = posting.twice()
    print(
        f"\nreshard: slot {slot} :{source.port} -> :{target.port}, {moved} keys in {took:.1f} s "
        f"({during} posts acknowledged by its end); {len(posting.accepted)} acknowledged, "
        f"{posting.refused} refused; TRYAGAIN {tryagain}; lost {len(lost)}, "
        f"ran twice {len(twice)}"
    )
    assert owners == {target.port}, "the slot did not move"
    assert tryagain > 0, "no call met the migration: the test proved nothing"
    assert posting.refused == 0 and len(posting.accepted) == POSTS
    assert not lost, f"posts lost in the migration: {lost}"
    assert not twice, f"jobs run more than once: {twice}"
    assert posting.ran() == {*posting.accepted, after}
    assert statuses == {JobStatus.COMPLETE}
    # no script half-applied: every figure adds up
    figures = {k: snapshot[k] for k in ("queued", "scheduled", "active", "dead", "stalled")}
    assert figures == dict.fromkeys(figures, 0)
    assert snapshot["totals"]["posted"] == POSTS + 1
    assert snapshot["totals"].get("complete") == POSTS + 1, snapshot["totals"]


async def test_a_result_awaited_while_the_master_is_down_comes_once_its_replica_takes_over(
    private_cluster: Cluster, queue: str, start_worker: StartWorker, tmp_path: Path
) -> None:
    """The job is over, so block_until_result only reads it: reads that meet its slot's
    master dead are tried again, as its wait for an outcome rides out the outage."""
    cluster, url, slot = private_cluster, private_cluster.url, _slot(queue)
    old = cluster.master_of_slot(slot)
    async with Client(queue, redis_url=url) as client:
        posting = Posting(client, tmp_path / "runs", durable=True)  # on the replica too
        async with start_worker(queue, url, "--replicas", "1") as worker:
            job_id = await posting.post()
            assert await client.block_until_result(job_id) == job_id
            await _stop(worker)  # its outcome durable: on the replica too
        await anyio.to_thread.run_sync(old.kill)
        with anyio.fail_after(30):
            assert await client.block_until_result(job_id) == job_id
        new = await anyio.to_thread.run_sync(cluster.wait_for_failover, slot, old)
    assert new.port != old.port

"""A job that kills its worker (SIGKILL, as an OOM kill or a segfault would) among others:
real `python -m aqueue worker` processes, restarted as a supervisor would. Only it ends dead;
the jobs claimed beside it are not blamed for its crashes, and each completes exactly once."""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable

import anyio
import pytest

from aqueue import Client, JobStatus
from aqueue.testing import RedisServer, until

from .conftest import StartWorker

pytestmark = pytest.mark.chaos


async def _supervise(
    start_worker: StartWorker,
    queue: str,
    url: str,
    done: Callable[[], Awaitable[bool]],
    *flags: str,
    workers: int = 1,
) -> int:
    """Keep `workers` worker processes up, starting a new one whenever one dies (as systemd's
    Restart= would), until `done()` — a read of Redis — holds. Returns how many were killed.
    A worker is stopped by leaving its block, never by cancelling it: a cancelled block would
    not wait for its process to end (nor close its pipes)."""
    killed = 0
    stopping = False
    waits: set[anyio.CancelScope] = set()

    async def keep_one_up() -> None:
        nonlocal killed
        while not stopping:
            async with start_worker(queue, url, *flags) as worker:
                with anyio.CancelScope() as waiting:
                    waits.add(waiting)
                    if stopping:
                        waiting.cancel()
                    exit_code = await worker.process.wait()
                    if exit_code == -signal.SIGKILL:
                        killed += 1
                waits.discard(waiting)

    async with anyio.create_task_group() as supervisor:
        for _ in range(workers):
            supervisor.start_soon(keep_one_up)
        await until(done, 90, interval=0.05)
        stopping = True
        for waiting in list(waits):
            waiting.cancel()
    return killed


async def _counted(client: Client, job_id: str) -> int:
    """The job's attempts that counted against its budget (less those `released`)."""
    [released] = await client.store.job_field_values(job_id, ["released"])
    return (await client.get_job(job_id)).attempt - int(released or 0)


def _all_ended(client: Client, ids: list[str]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        statuses = await client.store.statuses(ids)
        return all(s in (b"complete", b"dead", b"failed") for s in statuses)

    return check


async def test_a_poison_job_among_400_ends_dead_alone_and_every_other_completes_once(
    private_redis: RedisServer, queue: str, start_worker: StartWorker
) -> None:
    """At the default concurrency (16) and prefetch (64) a crash takes every job the worker
    held with it; those run again, each alone, and none is blamed."""
    url = private_redis.url
    async with Client(queue, redis_url=url) as client:
        # all with the same budget: the poison's crashes must not spend the others'
        before = await client.post_many(
            [{"seconds": 0.01, "n": n} for n in range(200)], functions=["slow"], retry=2
        )
        poison = await client.post("boom", functions=["crash"], retry=2)
        after = await client.post_many(
            [{"seconds": 0.01, "n": n} for n in range(200, 400)], functions=["slow"], retry=2
        )
        innocent = before + after
        killed = await _supervise(
            start_worker, queue, url, _all_ended(client, [poison, *innocent]), workers=2
        )

        job = await client.get_job(poison)
        assert job.status is JobStatus.DEAD and job.error_type == "LeaseLost"
        assert job.reason is not None and "retry budget spent" in job.reason
        # three counted attempts, each run alone; at most one more lost beside others
        assert await _counted(client, poison) == 3 and killed == job.attempt <= 4
        assert [j.id for j in await client.dead_letters()] == [poison]
        results = [await client.get_result(job_id) for job_id in innocent]
        assert sorted(r["n"] for r in results) == list(range(400))
        stats = await client.store.redis.hgetall(client.store.keys.stats)
        assert int(stats[b"complete"]) == 400  # each once: none lost, none twice
        assert int(stats[b"dead"]) == 1


async def test_an_innocent_job_claimed_beside_a_poison_one_completes_at_concurrency_2(
    private_redis: RedisServer, queue: str, start_worker: StartWorker
) -> None:
    """The case measured in issue 14: at concurrency 2 and prefetch 0, a 1 s job posted after
    the poison ended dead after 4 attempts without ever starting."""
    url = private_redis.url
    async with Client(queue, redis_url=url) as client:
        poison = await client.post("boom", functions=["crash"])
        innocent = await client.post({"seconds": 1.0}, functions=["slow"])
        killed = await _supervise(
            start_worker,
            queue,
            url,
            _all_ended(client, [poison, innocent]),
            "--concurrency", "2", "--prefetch", "0",
        )  # fmt: skip

        job = await client.get_job(innocent)
        assert job.status is JobStatus.COMPLETE, job.reason
        assert job.result["attempt"] == job.attempt == 2  # its lost attempt was not counted
        dead = await client.get_job(poison)
        assert dead.status is JobStatus.DEAD and killed == dead.attempt
        assert await _counted(client, poison) == 4  # the default budget, each attempt alone
        assert [j.id for j in await client.dead_letters()] == [poison]

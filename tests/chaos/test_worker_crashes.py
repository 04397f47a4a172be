"""Workers die (SIGKILL), freeze (SIGSTOP) and come back; no job is lost or recorded twice."""

from __future__ import annotations

import signal
from contextlib import aclosing
from typing import Any

import anyio
import pytest

from aqueue import Client, JobStatus
from aqueue.testing import until

from .conftest import StartWorker

pytestmark = [pytest.mark.chaos, pytest.mark.every_topology]


async def _until_started(client: Client, job_id: str, attempt: int) -> None:
    """Wait (pushed, via watch) until attempt `attempt` of the job reports it started."""
    with anyio.fail_after(20):
        async with aclosing(client.watch(job_id)) as events:
            async for event in events:
                if event.progress and event.progress.value == f"attempt {attempt} started":
                    return
    raise AssertionError(f"job {job_id} ended before attempt {attempt} started")


async def test_a_job_whose_worker_is_killed_mid_job_completes_once_on_another_worker(
    redis_url: str, queue: str, start_worker: StartWorker
) -> None:
    url = redis_url
    async with Client(queue, redis_url=url) as client:
        async with start_worker(queue, url) as doomed:
            victim = await client.post({"seconds": 1.0}, functions=["slow"])
            await _until_started(client, victim, attempt=1)
            doomed.signal(signal.SIGKILL)
            assert await doomed.wait() == -signal.SIGKILL
        others = await client.post_many(
            [{"seconds": 0.01, "n": n} for n in range(20)], functions=["slow"]
        )
        async with start_worker(queue, url) as survivor:
            with anyio.fail_after(20):
                result = await client.block_until_result(victim)
                for job_id in others:
                    await client.block_until_result(job_id)
            survivor.signal(signal.SIGTERM)
            assert await survivor.wait() == 0

        assert result == {"attempt": 2, "pid": survivor.pid, "n": None}
        job = await client.get_job(victim)
        assert job.status is JobStatus.COMPLETE and job.attempt == 2
        assert job.reason is not None and "lease lost on attempt 1" in job.reason
        assert job.progress is not None and job.progress.value == "attempt 2 finishing"
        for job_id in others:
            assert (await client.get_job(job_id)).attempt == 1  # nothing else ran twice
        stats = await client.store.redis.hgetall(client.store.keys.stats)
        assert int(stats[b"complete"]) == 21  # one completion per job: none lost, none twice


async def test_jobs_posted_to_a_waiting_worker_that_was_killed_all_complete_once(
    redis_url: str, queue: str, start_worker: StartWorker
) -> None:
    url = redis_url
    async with Client(queue, redis_url=url) as client:
        idle = client.store.keys.idle
        async with start_worker(queue, url) as doomed:
            await until(lambda: client.store.redis.hlen(idle), 20)  # it waits for pushed jobs
            doomed.signal(signal.SIGKILL)
            assert await doomed.wait() == -signal.SIGKILL
        ids = await client.post_many(
            [{"seconds": 0.01, "n": n} for n in range(20)], functions=["slow"]
        )
        async with start_worker(queue, url) as survivor:
            with anyio.fail_after(20):
                results = [await client.block_until_result(job_id) for job_id in ids]
            survivor.signal(signal.SIGTERM)
            assert await survivor.wait() == 0

        assert [r["n"] for r in results] == list(range(20))
        assert {r["pid"] for r in results} == {survivor.pid}
        stats = await client.store.redis.hgetall(client.store.keys.stats)
        assert int(stats[b"complete"]) == 20  # none lost, none twice
        assert await client.store.redis.hlen(idle) == 0  # neither is registered any more


async def test_a_job_that_kills_its_worker_every_time_ends_dead_after_its_budget(
    redis_url: str, queue: str, start_worker: StartWorker
) -> None:
    url = redis_url
    deaths = 0
    async with Client(queue, redis_url=url) as client:
        poison = await client.post("boom", functions=["crash"], retry=2)
        with anyio.fail_after(60):
            while (await client.get_job(poison)).status is not JobStatus.DEAD:
                async with start_worker(queue, url) as worker:
                    with anyio.move_on_after(3):  # a worker that finds nothing to claim lives on
                        if await worker.wait() == -signal.SIGKILL:
                            deaths += 1
        job = await client.get_job(poison)
        assert deaths == 3  # the first attempt and two retries; then no more
        assert job.attempt == 3
        assert job.reason is not None and "lease lost on attempt 3" in job.reason
        assert "budget spent" in job.reason and job.error_type == "LeaseLost"
        assert [j.id for j in await client.dead_letters()] == [poison]


async def test_a_frozen_worker_s_late_writes_are_refused_and_the_newer_attempt_stands(
    redis_url: str, queue: str, start_worker: StartWorker
) -> None:
    url = redis_url
    async with Client(queue, redis_url=url) as client:
        async with start_worker(queue, url) as frozen:
            job_id = await client.post({"seconds": 1.0}, functions=["slow"])
            await _until_started(client, job_id, attempt=1)
            frozen.signal(signal.SIGSTOP)  # longer than its lease, from here on
            async with start_worker(queue, url) as fresh:
                with anyio.fail_after(20):
                    result: Any = await client.block_until_result(job_id)
                assert result == {"attempt": 2, "pid": fresh.pid, "n": None}
                frozen.signal(signal.SIGCONT)
                # It wakes with its lease long gone. Either its heartbeat learns first that the
                # attempt is no longer its own and cancels it, or the listener's next write
                # (progress) is refused: both are the fence saying no.
                await frozen.wait_for_log("no longer ours", "lost its lease")
                for worker in (frozen, fresh):
                    worker.signal(signal.SIGTERM)
                    assert await worker.wait() == 0
        job = await client.get_job(job_id)
        assert job.status is JobStatus.COMPLETE and job.attempt == 2
        assert job.result == {"attempt": 2, "pid": fresh.pid, "n": None}
        assert job.progress is not None and job.progress.value == "attempt 2 finishing"
        stats = await client.store.redis.hgetall(client.store.keys.stats)
        assert int(stats[b"complete"]) == 1

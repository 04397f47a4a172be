"""SIGTERM drains a worker: running jobs finish within the grace period; the rest go back."""

from __future__ import annotations

import signal
from pathlib import Path

import anyio
import pytest

from aqueue import Client, JobStatus

from .conftest import StartWorker, until_active

pytestmark = [pytest.mark.chaos, pytest.mark.every_topology]


async def test_sigterm_lets_a_running_job_finish_then_exits_zero(
    redis_url: str, queue: str, start_worker: StartWorker
) -> None:
    async with Client(queue, redis_url=redis_url) as client:
        async with start_worker(queue, redis_url) as worker:
            job_id = await client.post({"seconds": 0.5}, functions=["slow"])
            await until_active(client, job_id)
            worker.signal(signal.SIGTERM)
            await worker.wait_for_log("draining")
            queued_after = await client.post({"seconds": 0}, functions=["slow"])
            assert await worker.wait() == 0
        job = await client.get_job(job_id)
        assert job.status is JobStatus.COMPLETE and job.attempt == 1
        assert (await client.get_job(queued_after)).status is JobStatus.QUEUED  # not claimed


async def test_past_the_grace_period_running_jobs_are_handed_back_and_run_again(
    redis_url: str, queue: str, start_worker: StartWorker
) -> None:
    async with Client(queue, redis_url=redis_url) as client:
        async with start_worker(queue, redis_url, "--grace", "0.3") as worker:
            job_id = await client.post({"seconds": 1.5}, functions=["slow"], retry=0)
            await until_active(client, job_id)
            worker.signal(signal.SIGTERM)
            assert await worker.wait() == 0
            assert "handing back job" in worker.text()
        job = await client.get_job(job_id)
        assert job.status is JobStatus.QUEUED and job.attempt == 1
        async with start_worker(queue, redis_url) as successor:
            with anyio.fail_after(20):
                result = await client.block_until_result(job_id)
            assert result["attempt"] == 2 and result["pid"] == successor.pid


async def test_a_second_sigterm_hands_running_jobs_back_at_once(
    redis_url: str, queue: str, start_worker: StartWorker
) -> None:
    async with Client(queue, redis_url=redis_url) as client:
        async with start_worker(queue, redis_url, "--grace", "60") as worker:
            job_id = await client.post({"seconds": 30}, functions=["slow"])
            await until_active(client, job_id)
            worker.signal(signal.SIGTERM)
            await worker.wait_for_log("draining")
            worker.signal(signal.SIGTERM)
            assert await worker.wait(timeout=10) == 0
        assert (await client.get_job(job_id)).status is JobStatus.QUEUED
        await client.cancel(job_id)


async def test_sigterm_runs_a_stateful_handler_s_teardown_after_its_last_job(
    redis_url: str,
    queue: str,
    start_worker: StartWorker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    marks = tmp_path / "lifecycle.log"
    monkeypatch.setenv("AQUEUE_TEST_LIFECYCLE", str(marks))  # the worker process inherits it
    async with Client(queue, redis_url=redis_url) as client:
        async with start_worker(queue, redis_url) as worker:
            job_id = await client.post("last", functions=["lifecycle"])
            await until_active(client, job_id)
            worker.signal(signal.SIGTERM)
            assert await worker.wait() == 0
        assert (await client.get_job(job_id)).status is JobStatus.COMPLETE
    lines = [line.split(" ", 1)[1] for line in marks.read_text().splitlines()]
    assert lines == ["setup", "ran last", "teardown"]

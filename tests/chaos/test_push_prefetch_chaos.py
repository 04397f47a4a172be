"""Pushed jobs, prefetch and the runner pool under chaos: real worker processes (listeners in
tests/chaos/push_listeners.py) are frozen, killed, signalled and cut off from Redis while
jobs are handed to them; no job is lost or run twice, and no daemon dies of it."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import anyio
import pytest

from aqueue import Client, JobStatus
from aqueue.testing import RedisServer, until

from .conftest import FAST, WorkerProcess, spawned

pytestmark = pytest.mark.chaos

StartProcess = Callable[..., AbstractAsyncContextManager[WorkerProcess]]


@pytest.fixture
def start_daemon(tmp_path: Path) -> StartProcess:
    """`async with start_daemon("worker", [q1, q2], url, *flags) as w:` — an aqueue daemon
    (worker: with tests.chaos.push_listeners; or reaper) serving the queues, killed after."""
    counter = 0

    @asynccontextmanager
    async def start(
        kind: str, queues: list[str], url: str, *extra: str
    ) -> AsyncIterator[WorkerProcess]:
        nonlocal counter
        counter += 1
        args = [kind]
        if kind == "worker":
            args += ["tests.chaos.push_listeners:listeners", *FAST]
        else:
            args += ["--reaper-interval", "0.1", "--log-format", "text"]
        for queue in queues:
            args += ["--queue", queue]
        async with spawned(
            [*args, "--redis-url", url, *extra], tmp_path / f"{kind}-{counter}.log"
        ) as daemon:
            if kind == "worker":
                with anyio.fail_after(20):
                    while daemon.text().count("serving queue") < len(queues):
                        await daemon.wait_for_log("serving queue")
                        await anyio.sleep(0.02)
            yield daemon

    return start


async def _waiting_workers(client: Client) -> int:
    """Workers registered as waiting for pushed jobs."""
    return int(await client.store.redis.hlen(client.store.keys.idle))


async def _completions(client: Client) -> int:
    return int(await client.store.redis.hget(client.store.keys.stats, "complete") or 0)


def _is(client: Client, job_id: str, status: JobStatus) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await client.get_job(job_id)).status is status

    return check


def _done_or_dead(
    client: Client, job_id: str, worker: WorkerProcess
) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        done = (await client.get_job(job_id)).status is JobStatus.COMPLETE
        return done or worker.process.returncode is not None

    return check


async def test_a_frozen_waiting_worker_handed_a_job_runs_it_once_and_lives_on(
    redis_server: RedisServer, queue: str, start_daemon: StartProcess
) -> None:
    """A worker waiting for work freezes (SIGSTOP: a VM pause, a stuck loop). A post hands it
    a job all the same; the reaper daemon takes the job back once its lease lapses. The worker
    thaws: the job completes exactly once, on attempt 2, and the worker serves on."""
    url = redis_server.url
    async with (
        Client(queue, redis_url=url) as client,
        start_daemon("worker", [queue], url) as worker,
    ):
        await until(lambda: _waiting_workers(client))
        worker.signal(signal.SIGSTOP)
        job_id = await client.post({"seconds": 0.5}, functions=["nap"])
        assert (await client.get_job(job_id)).worker is not None  # handed to the frozen one
        async with start_daemon("reaper", [queue], url):
            await until(_is(client, job_id, JobStatus.QUEUED))
        worker.signal(signal.SIGCONT)  # it claims the job again: attempt 2

        await until(_done_or_dead(client, job_id, worker))
        assert worker.process.returncode is None, f"the worker died:\n{worker.text()}"
        result = await client.block_until_result(job_id)
        assert result["attempt"] == 2 and result["pid"] == worker.pid
        later = await client.post({"seconds": 0}, functions=["nap"])
        with anyio.fail_after(8):
            await client.block_until_result(later)
        assert worker.process.returncode is None, worker.text()  # no crash
        worker.signal(signal.SIGTERM)
        assert await worker.wait() == 0, worker.text()
        assert await _completions(client) == 2
        assert (await client.counts())["active"] == 0


async def test_a_plain_function_parent_waiting_on_its_child_never_deadlocks_one_slot(
    redis_server: RedisServer, queue: str, start_daemon: StartProcess
) -> None:
    """README: block_until_result lends the slot out, "so a worker with one slot never
    deadlocks on a child job". A plain-function (thread) parent awaits a plain-function
    child on a one-slot worker."""
    url = redis_server.url
    async with (
        Client(queue, redis_url=url) as client,
        start_daemon("worker", [queue], url, "--concurrency", "1") as worker,
    ):
        job_id = await client.post(4, functions=["sync_parent"], retry=0)
        assert await client.block_until_result(job_id, timeout=6) == 41
        worker.signal(signal.SIGTERM)
        assert await worker.wait() == 0, worker.text()


async def _active_under(client: Client, pid: str) -> list[str]:
    """Ids of jobs Redis holds as active under the worker of process `pid`."""
    held = []
    for raw in await client.store.redis.zrangebyscore(client.store.keys.active, "-inf", "(+inf"):
        job_id = raw.decode() if isinstance(raw, bytes) else str(raw)
        job = await client.get_job(job_id)
        if job.status is JobStatus.ACTIVE and (job.worker or "").split(":")[1] == pid:
            held.append(job_id)
    return held


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
async def test_a_signal_while_posts_hand_a_worker_jobs_loses_none_and_runs_none_twice(
    private_redis: RedisServer, queue: str, start_daemon: StartProcess, signum: signal.Signals
) -> None:
    """Two workers wait for work while the app posts steadily; one gets SIGTERM (or SIGKILL)
    in the middle of it. After SIGTERM it exits 0 at once leaving no job active under its
    name; after SIGKILL the reaper recovers its jobs. Either way every job completes once."""
    url = private_redis.url
    posted: list[str] = []
    async with (
        Client(queue, redis_url=url) as client,
        start_daemon("worker", [queue], url, "--concurrency", "4") as leaving,
        start_daemon("worker", [queue], url, "--concurrency", "4") as staying,
    ):

        async def two_waiting() -> bool:
            return await _waiting_workers(client) == 2

        await until(two_waiting)

        async def post_steadily() -> None:
            for n in range(300):
                posted.append(await client.post({"seconds": 0.002, "n": n}, functions=["nap"]))
                if n % 4 == 0:
                    await anyio.sleep(0.001)

        async with anyio.create_task_group() as tg:
            tg.start_soon(post_steadily)
            await until(lambda: _past(posted, 100))
            leaving.signal(signum)
            if signum == signal.SIGTERM:
                assert await leaving.wait() == 0, leaving.text()
                # handed back at once, not left for the reaper
                assert await _active_under(client, f"{leaving.pid}") == []
            else:
                assert await leaving.wait() == -signal.SIGKILL
        with anyio.fail_after(20):
            results = [await client.block_until_result(job_id) for job_id in posted]
        assert [r["n"] for r in results] == list(range(300))
        assert await _completions(client) == 300  # each once
        if signum == signal.SIGTERM:  # none lost a lease: a hand-back costs no attempt
            for job_id, result in zip(posted, results, strict=True):
                [released] = await client.store.job_field_values(job_id, ["released"])
                assert result["attempt"] - int(released or 0) == 1
                assert (await client.get_job(job_id)).reason is None
        staying.signal(signal.SIGTERM)
        assert await staying.wait() == 0, staying.text()
    assert staying.process.returncode == 0


async def _past(items: list[str], count: int) -> bool:
    return len(items) >= count


async def test_a_worker_killed_holding_pushed_and_prefetched_jobs_loses_none_of_them(
    private_redis: RedisServer, queue: str, start_daemon: StartProcess
) -> None:
    """A worker that has learnt its jobs are short (so it holds jobs ahead of its slots) is
    handed a batch by posts: two run, ten wait in its inbox. It is SIGKILLed. Another worker's
    reaper takes them all back once their leases lapse; each job completes exactly once."""
    url = private_redis.url
    async with Client(queue, redis_url=url) as client:
        async with start_daemon("worker", [queue], url, "--concurrency", "2") as doomed:
            warmup = await client.post_many([{"seconds": 0}] * 200, functions=["nap"])
            with anyio.fail_after(20):
                for job_id in warmup:
                    await client.block_until_result(job_id)
            await until(lambda: _waiting_workers(client))
            ids = await client.post_many(
                [{"seconds": 0.5, "n": n} for n in range(2)], functions=["nap"]
            )
            ids += await client.post_many(
                [{"seconds": 0.01, "n": n} for n in range(2, 12)], functions=["nap"]
            )

            async def all_held() -> bool:
                return len(await _active_under(client, f"{doomed.pid}")) == 12

            await until(all_held)
            doomed.signal(signal.SIGKILL)
            assert await doomed.wait() == -signal.SIGKILL
        async with start_daemon("worker", [queue], url) as survivor:
            with anyio.fail_after(20):
                results = [await client.block_until_result(job_id) for job_id in ids]
            survivor.signal(signal.SIGTERM)
            assert await survivor.wait() == 0, survivor.text()
        assert [r["n"] for r in results] == list(range(12))
        assert [r["attempt"] for r in results] == [2] * 12
        assert {r["pid"] for r in results} == {survivor.pid}
        assert await _completions(client) == 200 + 12  # each once
        for job_id in ids:
            reason = (await client.get_job(job_id)).reason
            assert reason is not None and "lease lost on attempt 1" in reason


async def test_a_worker_serving_two_queues_takes_pushed_jobs_on_both_and_drains_both(
    redis_server: RedisServer, start_daemon: StartProcess
) -> None:
    """`aqueue worker --queue a --queue b`: one process waits on both queues; posts to each are
    handed to it; SIGTERM drains both queues' running jobs and strands nothing."""
    url = redis_server.url
    queues = [f"two-{os.urandom(4).hex()}", f"two-{os.urandom(4).hex()}"]
    async with (
        Client(queues[0], redis_url=url) as first,
        Client(queues[1], redis_url=url) as second,
        start_daemon("worker", queues, url) as worker,
    ):
        for client in (first, second):
            await until(lambda: _waiting_workers(client))  # noqa: B023 - awaited here
        quick = [await c.post({"seconds": 0, "n": 1}, functions=["nap"]) for c in (first, second)]
        with anyio.fail_after(10):
            for client, job_id in zip((first, second), quick, strict=True):
                assert (await client.block_until_result(job_id))["pid"] == worker.pid
        running = [
            await c.post({"seconds": 0.5, "n": 2}, functions=["nap"]) for c in (first, second)
        ]
        for client, job_id in zip((first, second), running, strict=True):
            await until(_is(client, job_id, JobStatus.ACTIVE))
        worker.signal(signal.SIGTERM)
        assert await worker.wait() == 0, worker.text()
        for client, job_id in zip((first, second), running, strict=True):
            job = await client.get_job(job_id)
            assert (job.status, job.attempt) == (JobStatus.COMPLETE, 1)
            assert (await client.counts())["active"] == 0
            assert await _waiting_workers(client) == 0


async def test_a_waiting_worker_whose_subscription_is_killed_still_gets_every_job(
    redis_server: RedisServer, queue: str, start_daemon: StartProcess
) -> None:
    """The worker waits for pushed jobs; its subscription is cut (CLIENT KILL TYPE pubsub)
    again and again while the app posts. Each job completes once, none waits for a lapse."""
    url = redis_server.url
    async with (
        Client(queue, redis_url=url) as client,
        start_daemon("worker", [queue], url) as worker,
    ):
        ids: list[str] = []
        for round_ in range(5):
            await until(lambda: _waiting_workers(client))
            killed = await client.store.redis.client_kill_filter(_type="pubsub")
            assert killed >= 1  # the worker's subscription (and maybe the client's own)
            ids += await client.post_many(
                [{"seconds": 0, "n": 10 * round_ + n} for n in range(10)], functions=["nap"]
            )
            with anyio.fail_after(10):
                results = [await client.block_until_result(job_id) for job_id in ids]
        assert [r["n"] for r in results] == list(range(50))
        assert [r["attempt"] for r in results] == [1] * 50  # no lease had to lapse
        assert await _completions(client) == 50
        assert worker.process.returncode is None  # it rode it out
        worker.signal(signal.SIGTERM)
        assert await worker.wait() == 0, worker.text()


async def test_a_redis_restart_while_a_worker_waits_for_pushed_jobs(
    private_redis: RedisServer, queue: str, start_daemon: StartProcess
) -> None:
    """Redis is killed and restarted (its AOF keeps the worker's registration as waiting)
    while the worker waits. Jobs posted after the restart are handed over or claimed, and
    each completes once; the worker rides it out."""
    url = private_redis.url
    async with (
        Client(queue, redis_url=url) as client,
        start_daemon("worker", [queue], url) as worker,
    ):
        await until(lambda: _waiting_workers(client))
        await anyio.to_thread.run_sync(private_redis.kill)
        await anyio.sleep(0.3)  # shorter than a lease
        await anyio.to_thread.run_sync(private_redis.start)
        ids = []
        for n in range(20):
            ids.append(await client.post({"seconds": 0, "n": n}, functions=["nap"]))
            await anyio.sleep(0.02)
        with anyio.fail_after(20):
            results = [await client.block_until_result(job_id) for job_id in ids]
        assert [r["n"] for r in results] == list(range(20))
        assert {r["pid"] for r in results} == {worker.pid}
        assert await _completions(client) == 20
        worker.signal(signal.SIGTERM)
        assert await worker.wait() == 0, worker.text()
        assert (await client.counts())["active"] == 0


async def test_sigterm_while_a_parent_has_lent_its_slot_to_its_child_drains_both(
    redis_server: RedisServer, queue: str, start_daemon: StartProcess
) -> None:
    """A one-slot worker runs a parent that awaits a child (the parent lent its slot to the
    child). SIGTERM arrives while the child runs: both finish within the grace, exit 0."""
    url = redis_server.url
    async with (
        Client(queue, redis_url=url) as client,
        start_daemon("worker", [queue], url, "--concurrency", "1") as worker,
    ):
        parent = await client.post({"seconds": 0.5, "n": 7}, functions=["parent"])
        progress = await until(lambda: client.get_progress(parent))
        assert progress is not None
        child = str(progress.value)
        await until(_is(client, child, JobStatus.ACTIVE))
        worker.signal(signal.SIGTERM)
        assert await worker.wait() == 0, worker.text()
        for job_id in (child, parent):
            job = await client.get_job(job_id)
            assert (job.status, job.attempt) == (JobStatus.COMPLETE, 1), worker.text()
        assert (await client.get_job(parent)).result == {"attempt": 1, "pid": worker.pid, "n": 7}
        assert (await client.counts())["active"] == 0

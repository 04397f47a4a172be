"""Edges of pushed jobs, prefetch and the runner pool, against a real Redis and real workers.

Each test is a user story: what an application does, and what it must then find in Redis.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio
import pytest

from aqueue import Client, Context, JobFailed, JobStatus, Listeners, SyncContext
from aqueue._worker.worker import Worker
from aqueue.testing import RedisServer, run_until_idle, running_worker, until


async def _registered_idle(client: Client, worker: Worker) -> bool:
    return bool(await client.store.redis.hexists(client.store.keys.idle, worker.id))


def _prefetch_fully(worker: Worker) -> None:
    """As if its jobs took 0.1 ms and its claims 10 ms: the gauge wants every prefetch place."""
    for _ in range(60):  # running means: drown out whatever it measured so far
        worker._prefetch.job_ran(0.0001)
        worker._prefetch.claim_took(0.010)


class Gauge:
    """How many listeners run at once, and the most that ever did."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0

    async def hold(self, seconds: float) -> None:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await anyio.sleep(seconds)
        finally:
            self.now -= 1


# -- the runner pool: lending a slot ---------------------------------------------------------


@pytest.mark.parametrize("ends_how", ["its child's result", "its timeout", "a cancel"])
async def test_a_parent_that_ends_while_its_slot_is_lent_leaves_no_extra_runner_behind(
    client: Client, redis_server: RedisServer, queue: str, ends_how: str
) -> None:
    """A parent job awaits a child and gets its result, or is cut short meanwhile (its own
    timeout, or the app cancels it). Afterwards the worker still runs at most `concurrency`
    listeners at once."""
    listeners = Listeners()
    gauge = Gauge()
    child_started = anyio.Event()

    @listeners.listener
    async def parent(msg: int, ctx: Context) -> Any:
        child = await ctx.post(msg, functions=["child"])
        return await ctx.block_until_result(child)

    @listeners.listener
    async def child(msg: int, ctx: Context) -> int:
        child_started.set()
        await anyio.sleep(0.4)  # outlives the parent
        return msg

    @listeners.listener
    async def probe(msg: int, ctx: Context) -> int:
        await gauge.hold(0.05)
        return msg

    async with running_worker(
        listeners, queue=queue, redis_url=redis_server.url, concurrency=1, prefetch=8
    ) as worker:
        if ends_how == "its child's result":
            parent_id = await client.post(1, functions=["parent"], retry=0)
            with anyio.fail_after(10):
                assert await client.block_until_result(parent_id) == 1
        else:
            if ends_how == "its timeout":
                parent_id = await client.post(1, functions=["parent"], timeout=0.2, retry=0)
            else:
                parent_id = await client.post(1, functions=["parent"], retry=0)
                with anyio.fail_after(10):
                    await child_started.wait()
                await client.cancel(parent_id)
            with anyio.fail_after(10), pytest.raises(JobFailed):
                await client.block_until_result(parent_id)
        await until(lambda: _registered_idle(client, worker))  # the child is done, too

        _prefetch_fully(worker)  # so that several probes wait in its inbox at once
        ids = await client.post_many(range(8), functions=["probe"])
        with anyio.fail_after(10):
            assert [await client.block_until_result(i) for i in ids] == list(range(8))
    assert gauge.most == 1  # concurrency=1


async def test_a_parent_awaiting_several_children_at_once_lends_only_its_own_slot(
    client: Client, redis_server: RedisServer, queue: str
) -> None:
    """A parent fans out: it posts four children and awaits them all at once. Its one slot is
    lent while it waits, so on a one-slot worker the children run one at a time."""
    listeners = Listeners()
    gauge = Gauge()

    @listeners.listener
    async def fan_out(msg: int, ctx: Context) -> list[int]:
        children = [await ctx.post(n, functions=["child"]) for n in range(msg)]
        results: dict[int, int] = {}

        async def await_child(n: int, child: str) -> None:
            results[n] = await ctx.block_until_result(child, timeout=10)

        async with anyio.create_task_group() as tg:
            for n, child in enumerate(children):
                tg.start_soon(await_child, n, child)
        return [results[n] for n in range(msg)]

    @listeners.listener
    async def child(msg: int, ctx: Context) -> int:
        await gauge.hold(0.1)
        return msg * 10

    async with running_worker(listeners, queue=queue, redis_url=redis_server.url, concurrency=1):
        job_id = await client.post(4, functions=["fan_out"])
        with anyio.fail_after(10):
            assert await client.block_until_result(job_id) == [0, 10, 20, 30]
    assert gauge.most == 1  # concurrency=1


async def test_a_plain_function_past_its_timeout_does_not_run_beside_the_next_job(
    client: Client, redis_server: RedisServer, queue: str
) -> None:
    """A one-slot worker runs a plain function that overruns its timeout. The job fails with
    JobTimeout; its thread cannot be stopped, and until it ends no other listener starts."""
    listeners = Listeners()
    lock = threading.Lock()
    busy, most = 0, 0
    overran = threading.Event()

    @listeners.listener
    def grind(seconds: float, ctx: SyncContext) -> float:
        nonlocal busy, most
        with lock:
            busy += 1
            most = max(most, busy)
        time.sleep(seconds)
        with lock:
            busy -= 1
        if seconds > 0.1:
            overran.set()
        return seconds

    async with running_worker(listeners, queue=queue, redis_url=redis_server.url, concurrency=1):
        slow = await client.post(0.6, functions=["grind"], timeout=0.1, retry=0)
        with anyio.fail_after(10), pytest.raises(JobFailed, match="JobTimeout"):
            await client.block_until_result(slow)
        quick = await client.post(0.01, functions=["grind"])
        with anyio.fail_after(10):
            assert await client.block_until_result(quick) == 0.01
            await anyio.to_thread.run_sync(overran.wait)  # no thread outlives the test
    assert most == 1  # concurrency=1


# -- stopping while jobs are pushed ----------------------------------------------------------


async def test_a_job_posted_as_the_worker_stops_is_never_left_active(
    client: Client, redis_server: RedisServer, queue: str
) -> None:
    """The app posts just as the worker (registered idle) is told to stop: the job is either
    handed back or left queued, never active under a worker that has gone."""
    listeners = Listeners()
    ran: list[int] = []

    @listeners.listener
    async def record(msg: int, ctx: Context) -> None:
        ran.append(msg)

    posted: list[str] = []
    for n in range(10):
        async with running_worker(listeners, queue=queue, redis_url=redis_server.url) as worker:
            await until(lambda: _registered_idle(client, worker))
            worker.stop()
            posted.append(await client.post(n, functions=["record"]))
        statuses = [(await client.get_job(i)).status for i in posted]
        assert JobStatus.ACTIVE not in statuses, f"round {n}: {statuses}"
    assert (await client.counts())["active"] == 0
    await run_until_idle(listeners, queue=queue, redis_url=redis_server.url)
    assert sorted(ran) == list(range(10))


# -- cancelling jobs a worker holds but has not started ---------------------------------------


async def test_cancelled_prefetched_and_pushed_jobs_never_start(
    client: Client, redis_server: RedisServer, queue: str
) -> None:
    """A one-slot worker is busy; one job waits in its inbox because it claimed it ahead
    (prefetch), another because a post handed it over. The app cancels both: neither ever
    starts, the others run, and nothing stays active."""
    listeners = Listeners()
    ran: list[str] = []
    release = anyio.Event()

    @listeners.listener
    async def step(msg: str, ctx: Context) -> str:
        ran.append(msg)
        if msg == "blocker":
            await release.wait()
        return msg

    async with running_worker(
        listeners, queue=queue, redis_url=redis_server.url, concurrency=1, prefetch=4
    ) as worker:
        await until(lambda: _registered_idle(client, worker))
        _prefetch_fully(worker)
        blocker, prefetched, kept = await client.post_many(
            ["blocker", "prefetched", "kept"], functions=["step"]
        )

        async def all_held() -> bool:
            return (await client.counts())["active"] == 3

        await until(all_held)  # one running, two waiting in its inbox
        await until(lambda: _registered_idle(client, worker))  # it waits for more
        pushed = await client.post("pushed", functions=["step"])
        assert (await client.get_job(pushed)).worker == worker.id  # handed to it

        assert await client.cancel(prefetched) is JobStatus.ACTIVE
        assert await client.cancel(pushed) is JobStatus.ACTIVE
        release.set()
        with anyio.fail_after(10):
            assert await client.block_until_result(kept) == "kept"
            assert await client.block_until_result(blocker) == "blocker"
        for job_id in (prefetched, pushed):
            with pytest.raises(JobFailed, match="cancelled"):
                await client.block_until_result(job_id, timeout=5)
    assert sorted(ran) == ["blocker", "kept"]
    assert (await client.counts())["active"] == 0


# -- pushed jobs and leases --------------------------------------------------------------------


async def test_jobs_waiting_in_the_inbox_past_their_lease_keep_it_and_their_timeout(
    client: Client, redis_server: RedisServer, queue: str
) -> None:
    """Jobs a busy one-slot worker holds ahead (pushed and prefetched) wait longer than a
    lease and longer than their own timeout: their leases are renewed (no second attempt)
    and the timeout counts from their start, not from their claim."""
    listeners = Listeners()

    @listeners.listener
    async def work(seconds: float, ctx: Context) -> int:
        await anyio.sleep(seconds)
        return ctx.attempt

    async with running_worker(
        listeners, queue=queue, redis_url=redis_server.url, concurrency=1, prefetch=4
    ) as worker:
        await until(lambda: _registered_idle(client, worker))
        _prefetch_fully(worker)
        long = await client.post(1.5, functions=["work"])  # 2.5 leases of 0.6 s
        waiting = await client.post_many([0.05] * 4, functions=["work"], timeout=0.5)
        with anyio.fail_after(10):
            assert await client.block_until_result(long) == 1
            assert [await client.block_until_result(i) for i in waiting] == [1, 1, 1, 1]
    stats = await client.store.redis.hgetall(client.store.keys.stats)
    assert int(stats[b"complete"]) == 5 and b"dead" not in stats


# -- many waiting workers ----------------------------------------------------------------------


async def test_a_batch_bigger_than_every_waiting_worker_s_places_runs_each_job_once(
    client: Client, redis_server: RedisServer, queue: str
) -> None:
    """Three workers wait for work, two places each; the app posts 60 jobs at once. Each
    job runs exactly once, on attempt 1, and no worker ever runs more than two at once."""
    listeners = Listeners()
    ran: list[int] = []
    gauges: dict[str, Gauge] = {}

    @listeners.listener
    async def tick(msg: int, ctx: Context) -> int:
        ran.append(msg)
        await gauges.setdefault(ctx.worker_id, Gauge()).hold(0.01)
        return ctx.attempt

    url = redis_server.url
    async with (
        running_worker(listeners, queue=queue, redis_url=url, concurrency=2, prefetch=0) as a,
        running_worker(listeners, queue=queue, redis_url=url, concurrency=2, prefetch=0) as b,
        running_worker(listeners, queue=queue, redis_url=url, concurrency=2, prefetch=0) as c,
    ):
        for worker in (a, b, c):
            await until(lambda: _registered_idle(client, worker))  # noqa: B023 - awaited here
        ids = await client.post_many(range(60), functions=["tick"])
        with anyio.fail_after(10):
            assert [await client.block_until_result(i) for i in ids] == [1] * 60
    assert sorted(ran) == list(range(60))
    assert set(gauges) <= {a.id, b.id, c.id} and all(g.most <= 2 for g in gauges.values())
    assert (await client.counts())["active"] == 0


async def test_a_waiting_worker_is_handed_only_jobs_it_has_every_listener_for(
    client: Client, redis_server: RedisServer, queue: str
) -> None:
    """Two workers wait: one has `resize` only, the other `resize` and `train`. Jobs that
    need `train` — more than the second has places — all run there and only there."""
    small, big = Listeners(), Listeners()
    ran_on: dict[str, list[str]] = {"resize": [], "train": []}

    async def resize(msg: int, ctx: Context) -> int:
        ran_on["resize"].append(ctx.worker_id)
        return msg

    async def train(msg: int, ctx: Context) -> int:
        ran_on["train"].append(ctx.worker_id)
        await anyio.sleep(0.01)
        return msg

    small.add(resize)
    big.add(resize)
    big.add(train)
    url = redis_server.url
    async with (
        running_worker(small, queue=queue, redis_url=url, concurrency=4) as cpu,
        running_worker(big, queue=queue, redis_url=url, concurrency=2) as gpu,
    ):
        for worker in (cpu, gpu):
            await until(lambda: _registered_idle(client, worker))  # noqa: B023 - awaited here
        trains = await client.post_many(range(10), functions=["train"])
        resizes = await client.post_many(range(10), functions=["resize"])
        with anyio.fail_after(10):
            assert [await client.block_until_result(i) for i in trains] == list(range(10))
            assert [await client.block_until_result(i) for i in resizes] == list(range(10))
    assert ran_on["train"] == [gpu.id] * 10
    assert len(ran_on["resize"]) == 10


# -- prefetch = 0 ------------------------------------------------------------------------------


async def test_with_prefetch_off_a_waiting_worker_holds_no_more_jobs_than_its_slots(
    client: Client, redis_server: RedisServer, queue: str
) -> None:
    """`prefetch = 0` turns prefetch off: a worker handed a batch by a post, then claiming
    the rest, holds at most `concurrency` jobs; the rest stay queued for other workers."""
    listeners = Listeners()
    release = anyio.Event()

    @listeners.listener
    async def hold(msg: int, ctx: Context) -> int:
        await release.wait()
        return msg

    async with running_worker(
        listeners, queue=queue, redis_url=redis_server.url, concurrency=3, prefetch=0
    ) as worker:
        _prefetch_fully(worker)  # it would prefetch all it may: but it may not
        await until(lambda: _registered_idle(client, worker))
        ids = await client.post_many(range(10), functions=["hold"])

        async def three_held() -> bool:
            return (await client.counts())["active"] == 3

        await until(three_held)
        await anyio.sleep(0.5)  # a few idle waits (0.2 s): it claims again, and must not take more
        counts = await client.counts()
        assert (counts["active"], counts["queued"]) == (3, 7)
        release.set()
        with anyio.fail_after(10):
            assert [await client.block_until_result(i) for i in ids] == list(range(10))


# -- burst mode --------------------------------------------------------------------------------


async def test_burst_mode_runs_the_children_posted_by_its_jobs_then_returns(
    client: Client, redis_server: RedisServer, queue: str
) -> None:
    """run_until_idle on parents that post children (handed straight to the waiting worker
    itself) and await some of them: everything runs once, and nothing is left behind."""
    listeners = Listeners()
    ran: list[str] = []

    @listeners.listener
    async def parent(msg: int, ctx: Context) -> int:
        ran.append(f"parent {msg}")
        awaited = await ctx.post(msg, functions=["child"])
        await ctx.post(-msg, functions=["child"])  # fire and forget
        return int(await ctx.block_until_result(awaited, timeout=5)) + 1

    @listeners.listener
    async def child(msg: int, ctx: Context) -> int:
        ran.append(f"child {msg}")
        return msg * 10

    ids = await client.post_many(range(1, 6), functions=["parent"])
    with anyio.fail_after(10):
        await run_until_idle(listeners, queue=queue, redis_url=redis_server.url, concurrency=2)
    assert [(await client.get_job(i)).result for i in ids] == [11, 21, 31, 41, 51]
    assert sorted(ran) == sorted(
        [f"parent {n}" for n in range(1, 6)]
        + [f"child {n}" for n in range(1, 6)]
        + [f"child {-n}" for n in range(1, 6)]
    )
    counts = await client.counts()
    assert (counts["active"], counts["queued"]) == (0, 0)
    assert not await client.store.redis.hlen(client.store.keys.idle)

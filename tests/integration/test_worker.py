"""A daemon runs listeners on posted jobs: results, progress, routing, retries, failures."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import msgpack
import pytest
from redis.asyncio.cluster import RedisCluster

from aqueue import (
    Client,
    Context,
    JobFailed,
    JobStatus,
    Listeners,
    Output,
    ResultTimeout,
    Retry,
    RetryPolicy,
    SyncContext,
)
from aqueue._codec import encode
from aqueue._redis.calls import NewJobs
from aqueue._redis.coalesce import Coalescer
from aqueue._redis.records import SpecShape
from aqueue._redis.store import Store
from aqueue.config import ClientConfig
from aqueue.testing import RedisServer, run_until_idle, running_worker, until

pytestmark = pytest.mark.every_topology


def _echoing(*, refusing: bool = False) -> Listeners:
    """A worker's listeners: `echo` answers with the message; `refuse`, if asked for, fails."""
    listeners = Listeners()

    @listeners.listener
    async def echo(msg: int, ctx: Context) -> int:
        return msg

    if refusing:

        @listeners.listener
        async def refuse(msg: int, ctx: Context) -> int:
            raise ValueError(f"no {msg}")

    return listeners


async def test_an_async_listener_s_result_and_progress_reach_the_client(
    client: Client, redis_url: str, queue: str
) -> None:
    listeners = Listeners()

    @listeners.listener
    async def multiply(msg: dict[str, int], ctx: Context) -> int:
        await ctx.update_progress(50, "half way")
        return msg["a"] * msg["b"]

    async with running_worker(listeners, queue=queue, redis_url=redis_url) as worker:
        job_id = await client.post({"a": 6, "b": 7}, functions=["multiply"])
        with anyio.fail_after(10):
            assert await client.block_until_result(job_id) == 42
    job = await client.get_job(job_id)
    assert job.status is JobStatus.COMPLETE
    assert job.result == 42 and job.short_result is None
    assert job.progress is not None and (job.progress.value, job.progress.message) == (
        50,
        "half way",
    )
    assert job.attempt == 1 and job.worker == worker.id
    assert job.posted_at <= job.started_at <= job.finished_at  # type: ignore[operator]
    assert await client.get_progress(job_id) == job.progress


async def test_short_and_full_results_are_explicit_and_bytes_stay_bytes(
    client: Client, redis_url: str, queue: str
) -> None:
    listeners = Listeners()
    image = bytes(range(256)) * 1000

    @listeners.listener
    async def render(msg: str, ctx: Context) -> Output:
        return Output(result=image, short="widget")

    @listeners.listener
    async def label(msg: str, ctx: Context) -> str:
        return msg.upper()

    @listeners.listener
    async def pair(msg: str, ctx: Context) -> tuple[int, int]:
        return (1, 2)  # a tuple is a value like any other, never split into results

    async with running_worker(listeners, queue=queue, redis_url=redis_url):
        rendered = await client.post("x", functions=["render"])
        labelled = await client.post("cat", functions=["label"])
        paired = await client.post("x", functions=["pair"])
        with anyio.fail_after(10):
            assert await client.block_until_result(rendered) == image
            assert await client.block_until_result(labelled) == "CAT"
            assert await client.block_until_result(paired) == [1, 2]
    assert (await client.get_job(rendered)).short_result == "widget"
    assert (await client.get_job(labelled)).short_result == "CAT"
    assert (await client.get_job(paired)).short_result is None


async def test_an_awaited_result_arrives_with_the_completion_event_as_stored(
    client: Client, redis_url: str, queue: str
) -> None:
    listeners = Listeners()

    @listeners.listener
    async def answer(msg: dict[str, Any], ctx: Context) -> dict[str, Any]:
        await anyio.sleep(0.2)  # the client awaits by now: the result is pushed to it
        return {"echo": msg, "bytes": b"\x00\xff"}

    async with running_worker(listeners, queue=queue, redis_url=redis_url):
        job_id = await client.post({"n": 1}, functions=["answer"])
        with anyio.fail_after(10):
            pushed = await client.block_until_result(job_id)
    assert pushed == {"echo": {"n": 1}, "bytes": b"\x00\xff"}
    assert pushed == await client.get_result(job_id)


async def test_outcomes_of_posts_made_while_listening_are_never_missed(
    client: Client, redis_url: str, queue: str
) -> None:
    # A client that awaits results hears the outcomes of its later single posts without
    # asking: ended before it awaits, or while its subscription was cut, it still gets them.
    listeners = _echoing(refusing=True)
    async with running_worker(listeners, queue=queue, redis_url=redis_url):
        with anyio.fail_after(10):
            assert await client.block_until_result(await client.post(0, functions=["echo"])) == 0
            early = await client.post(1, functions=["echo"])
            failed = await client.post(2, functions=["refuse"], retry=0)
            for job_id in (early, failed):  # both end before anyone awaits them
                await until(partial(_ended, client, job_id))
            assert await client.block_until_result(early) == 1
            with pytest.raises(JobFailed, match="no 2"):
                await client.block_until_result(failed)

            await client.store.redis.client_kill_filter(_type="pubsub")
            cut = await client.post(3, functions=["echo"])  # its outcome may come unheard
            assert await client.block_until_result(cut) == 3


async def test_an_outcome_heard_before_its_post_returned_is_not_missed(
    client: Client, redis_url: str, queue: str
) -> None:
    # A busy app reads a post's reply late: by then a worker may have run the job, and its
    # outcome reached the client's subscription. The job was the client's all along.
    listeners = _echoing()

    async def post_read_late(new: NewJobs, key_ttl_ms: int) -> list[str]:
        ids = await client.store.post(new, key_ttl_ms)
        # read late: once a worker has run the job (its outcome is on its way to us, or here)
        await until(partial(_is, client, ids[0], JobStatus.COMPLETE))
        return ids

    async with running_worker(listeners, queue=queue, redis_url=redis_url):
        with anyio.fail_after(10):
            assert await client.block_until_result(await client.post(0, functions=["echo"])) == 0
            client._posts = Coalescer(post_read_late)
            job_id = await client.post(1, functions=["echo"])
            assert (await client.get_job(job_id)).status is JobStatus.COMPLETE
            assert await client.block_until_result(job_id) == 1  # no timeout: heard, or asked


async def test_plain_functions_run_in_threads_without_blocking_the_loop(
    client: Client, redis_url: str, queue: str
) -> None:
    listeners = Listeners()
    threads: set[int] = set()

    @listeners.listener
    def slow_sync(msg: int, ctx: SyncContext) -> int:
        threads.add(threading.get_ident())
        ctx.update_progress(msg)
        time.sleep(0.3)  # blocking on purpose: the event loop must stay free
        return msg + 1

    async with running_worker(listeners, queue=queue, redis_url=redis_url, concurrency=4):
        ids = await client.post_many(range(4), functions=["slow_sync"])
        with anyio.fail_after(10):
            results = [await client.block_until_result(i) for i in ids]
    assert results == [1, 2, 3, 4]
    assert threading.get_ident() not in threads and len(threads) >= 2


async def test_prefetched_jobs_wait_for_a_slot_and_go_back_at_once_on_stop(
    client: Client, redis_url: str, queue: str
) -> None:
    listeners = Listeners()
    running, most = 0, 0
    release = anyio.Event()

    @listeners.listener
    async def hold(msg: int, ctx: Context) -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await release.wait()
        running -= 1
        return msg

    async with running_worker(
        listeners, queue=queue, redis_url=redis_url, concurrency=2, prefetch=3, grace=30.0
    ) as w:
        # as if its jobs had taken 1 ms and its claims 10 ms: it prefetches all it may
        w._prefetch.job_ran(0.001)
        w._prefetch.claim_took(0.010)
        ids = await client.post_many(range(10), functions=["hold"])
        await until(partial(_counted, client, "active", 5))
        counts = await client.counts()
        assert (counts["active"], counts["queued"], w.running) == (5, 5, 2)  # 2 run, 3 wait

        w.stop()  # the 3 waiting go back at once; the 2 running may finish within the grace
        await until(partial(_counted, client, "queued", 8))
        release.set()
    jobs = [await client.get_job(i) for i in ids]
    assert [j.status for j in jobs].count(JobStatus.COMPLETE) == 2
    assert most == 2
    handed_back = [j for j in jobs if j.status is JobStatus.QUEUED and j.attempt == 1]
    assert len(handed_back) == 3
    for job in handed_back:  # counted as released: their retry budget is whole
        assert await client.store.job_field_values(job.id, ["released"]) == [b"1"]


async def test_a_worker_stopped_mid_drain_hands_back_what_it_claimed_and_loses_nothing(
    client: Client, redis_url: str, queue: str
) -> None:
    listeners = Listeners()

    @listeners.listener
    async def quick(msg: int, ctx: Context) -> None:
        return None

    async def completed() -> int:
        return int(await client.store.redis.hget(client.store.keys.stats, "complete") or 0)

    ids = await client.post_many(range(3000), functions=["quick"])
    for _ in range(5):  # stop it at a few moments of its claiming
        async with running_worker(listeners, queue=queue, redis_url=redis_url) as worker:
            enough = min(await completed() + 100, len(ids))

            async def reached(enough: int = enough) -> bool:
                return await completed() >= enough

            await until(reached, interval=0.001)
            worker.stop()  # whatever it claimed now: handed back, or finished in the grace
        counts = await client.counts()
        assert counts["active"] == 0
        assert await completed() + counts["queued"] == len(ids)


async def test_routing_a_job_waits_for_a_worker_with_all_its_listeners(
    client: Client, redis_url: str, queue: str
) -> None:
    only_a, both = Listeners(), Listeners()
    ran_on: list[str] = []

    async def a(msg: Any, ctx: Context) -> str:
        ran_on.append(ctx.worker_id)
        return "a"

    async def b(msg: Any, ctx: Context) -> str:
        return "b"

    only_a.add(a)
    both.add(a)
    both.add(b)
    job_id = await client.post("x", functions=["a", "b"])
    async with running_worker(only_a, queue=queue, redis_url=redis_url) as worker_a:
        with pytest.raises(ResultTimeout):
            await client.block_until_result(job_id, timeout=0.5)
        job = await client.get_job(job_id)
        assert job.status is JobStatus.QUEUED and job.waiting_for == ("a", "b")
        assert job.reason is not None and "no live worker has them" in job.reason
        assert not ran_on
        async with running_worker(both, queue=queue, redis_url=redis_url) as worker_ab:
            with anyio.fail_after(10):
                assert await client.block_until_result(job_id) == "b"  # the last listener's
    assert ran_on == [worker_ab.id] and worker_a.id != worker_ab.id


async def test_a_failing_listener_is_retried_with_backoff_then_succeeds(
    client: Client, redis_url: str, queue: str
) -> None:
    listeners = Listeners()
    attempts: list[int] = []

    @listeners.listener
    async def flaky(msg: Any, ctx: Context) -> str:
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise ConnectionError("upstream hiccup")
        return "ok"

    async with running_worker(listeners, queue=queue, redis_url=redis_url):
        job_id = await client.post("x", retry=RetryPolicy(retries=3, delay=0.05, backoff=2))
        with anyio.fail_after(10):
            assert await client.block_until_result(job_id) == "ok"
    assert attempts == [1, 2, 3]
    job = await client.get_job(job_id)
    assert job.attempt == 3 and job.error_type == "ConnectionError"  # the last failure is kept


async def test_retry_requested_by_the_listener_waits_its_delay(
    client: Client, redis_url: str, queue: str
) -> None:
    listeners = Listeners()

    @listeners.listener
    async def later(msg: Any, ctx: Context) -> int:
        if ctx.attempt == 1:
            raise Retry(delay=0.5)
        return ctx.attempt

    async with running_worker(listeners, queue=queue, redis_url=redis_url):
        job_id = await client.post("x")
        # the test's own condition; there is no event for it
        await until(partial(_is, client, job_id, JobStatus.SCHEDULED), 5, interval=0.02)
        with anyio.fail_after(10):
            assert await client.block_until_result(job_id) == 2
    job = await client.get_job(job_id)
    assert job.finished_at - job.posted_at >= 0.5  # type: ignore[operator]


async def test_errors_outside_retry_on_fail_at_once_with_the_remote_traceback(
    client: Client, redis_url: str, queue: str
) -> None:
    listeners = Listeners()

    @listeners.listener(retry_on=(ConnectionError,))
    async def strict(msg: Any, ctx: Context) -> None:
        raise ValueError(f"bad input {msg!r}")

    async with running_worker(listeners, queue=queue, redis_url=redis_url):
        job_id = await client.post(17)
        with anyio.fail_after(10), pytest.raises(JobFailed) as failed:
            await client.block_until_result(job_id)
    assert failed.value.status == "failed" and failed.value.error_type == "ValueError"
    assert failed.value.error_message == "bad input 17"
    assert failed.value.traceback is not None and "in strict" in failed.value.traceback
    job = await client.get_job(job_id)
    assert job.status is JobStatus.FAILED and job.attempt == 1
    assert await client.dead_letters() == []


async def test_a_job_that_always_fails_is_dead_lettered_once_after_its_budget(
    client: Client, redis_url: str, queue: str
) -> None:
    listeners = Listeners()
    runs: list[int] = []

    @listeners.listener
    async def broken(msg: Any, ctx: Context) -> None:
        runs.append(ctx.attempt)
        raise RuntimeError("always")

    @listeners.listener
    async def fine(msg: Any, ctx: Context) -> str:
        return "still serving"

    async with running_worker(listeners, queue=queue, redis_url=redis_url):
        job_id = await client.post("x", functions=["broken"], retry=RetryPolicy(2, delay=0.01))
        with anyio.fail_after(10), pytest.raises(JobFailed, match=r"dead.*RuntimeError: always"):
            await client.block_until_result(job_id)
        # a listener failure never stops the worker
        with anyio.fail_after(10):
            assert await client.block_until_result(await client.post(1, functions=["fine"])) == (
                "still serving"
            )
    assert runs == [1, 2, 3]
    [dead] = await client.dead_letters()
    assert dead.id == job_id and dead.status is JobStatus.DEAD
    assert dead.error_type == "RuntimeError" and dead.reason is not None
    assert "budget" in dead.reason


async def test_a_dead_letter_can_be_inspected_requeued_and_purged(
    client: Client, redis_url: str, queue: str
) -> None:
    listeners = Listeners()
    healed = False

    @listeners.listener
    async def heals(msg: Any, ctx: Context) -> str:
        if not healed:
            raise RuntimeError("not yet")
        return "healed"

    async with running_worker(listeners, queue=queue, redis_url=redis_url):
        doomed = await client.post_many(["a", "b"], retry=0)
        for job_id in doomed:
            with anyio.fail_after(10), pytest.raises(JobFailed):
                await client.block_until_result(job_id)
        assert sorted(j.id for j in await client.dead_letters()) == sorted(doomed)
        healed = True
        assert await client.requeue(doomed[0]) is JobStatus.DEAD
        with anyio.fail_after(10):
            assert await client.block_until_result(doomed[0]) == "healed"
    assert [j.id for j in await client.dead_letters()] == [doomed[1]]
    assert await client.purge_dead() == 1
    assert await client.dead_letters() == []


async def test_a_timeout_cancels_the_listener_and_counts_as_a_failure(
    client: Client, redis_url: str, queue: str
) -> None:
    listeners = Listeners()
    finished = False

    @listeners.listener
    async def sleepy(msg: Any, ctx: Context) -> None:
        nonlocal finished
        await anyio.sleep(30)
        finished = True

    async with running_worker(listeners, queue=queue, redis_url=redis_url):
        job_id = await client.post("x", timeout=0.2, retry=0)
        with anyio.fail_after(10), pytest.raises(JobFailed, match="JobTimeout"):
            await client.block_until_result(job_id)
    assert not finished


async def test_cancelling_a_running_job_cancels_its_listener(
    client: Client, redis_url: str, queue: str
) -> None:
    listeners = Listeners()
    started, cancelled = anyio.Event(), anyio.Event()

    @listeners.listener
    async def endless(msg: Any, ctx: Context) -> None:
        started.set()
        try:
            await anyio.sleep(60)
        finally:
            cancelled.set()

    async with running_worker(listeners, queue=queue, redis_url=redis_url):
        job_id = await client.post("x")
        with anyio.fail_after(10):
            await started.wait()
            assert await client.cancel(job_id) is JobStatus.ACTIVE
            await cancelled.wait()
        with pytest.raises(JobFailed, match="cancelled"):
            await client.block_until_result(job_id, timeout=5)
    assert (await client.get_job(job_id)).status is JobStatus.CANCELLED


async def test_a_cancelled_queued_job_never_runs(
    client: Client, redis_url: str, queue: str
) -> None:
    listeners = Listeners()
    ran: list[Any] = []

    @listeners.listener
    async def record(msg: Any, ctx: Context) -> None:
        ran.append(msg)

    doomed = await client.post("doomed")
    await client.post("kept")
    await client.cancel(doomed)
    await run_until_idle(listeners, queue=queue, redis_url=redis_url)
    assert ran == ["kept"]


async def test_waiting_on_a_child_job_never_deadlocks_a_single_slot_worker(
    client: Client, redis_url: str, queue: str
) -> None:
    listeners = Listeners()

    @listeners.listener
    async def parent(msg: int, ctx: Context) -> int:
        child = await ctx.post(msg, functions=["child"])
        return int(await ctx.block_until_result(child, timeout=10)) + 1

    @listeners.listener
    async def child(msg: int, ctx: Context) -> int:
        return msg * 10

    async with running_worker(listeners, queue=queue, redis_url=redis_url, concurrency=1):
        job_id = await client.post(4, functions=["parent"])
        with anyio.fail_after(15):
            assert await client.block_until_result(job_id) == 41


async def test_a_lent_slot_comes_back_so_no_more_listeners_run_than_the_concurrency(
    client: Client, redis_url: str, queue: str
) -> None:
    listeners = Listeners()
    busy, most = 0, 0

    def working(change: int) -> None:
        nonlocal busy, most
        busy += change
        most = max(most, busy)

    @listeners.listener
    async def parent(msg: int, ctx: Context) -> int:
        working(+1)
        await anyio.sleep(0.02)
        working(-1)  # waiting on the child: its slot is lent out
        child = await ctx.post(msg, functions=["child"])
        result = int(await ctx.block_until_result(child, timeout=10))
        working(+1)  # running again: a slot is ours again
        await anyio.sleep(0.02)
        working(-1)
        return result + 1

    @listeners.listener
    async def child(msg: int, ctx: Context) -> int:
        working(+1)
        await anyio.sleep(0.02)
        working(-1)
        return msg * 10

    async with running_worker(listeners, queue=queue, redis_url=redis_url, concurrency=2):
        ids = await client.post_many(range(6), functions=["parent"])
        with anyio.fail_after(30):
            assert [await client.block_until_result(i) for i in ids] == [1, 11, 21, 31, 41, 51]
    assert most == 2


async def test_listeners_share_data_through_store_and_fetch(
    client: Client, redis_url: str, queue: str
) -> None:
    listeners = Listeners()

    @listeners.listener
    async def produce(msg: Any, ctx: Context) -> str:
        return await ctx.store_data(b"\x00interim\xff", expiry=30)

    @listeners.listener
    def consume(key: str, ctx: SyncContext) -> bytes:
        data = ctx.fetch_data(key)
        assert isinstance(data, bytes)
        return data[::-1]

    async with running_worker(listeners, queue=queue, redis_url=redis_url):
        key = await client.block_until_result(await client.post(None, functions=["produce"]), 10)
        reversed_ = await client.block_until_result(
            await client.post(key, functions=["consume"]), 10
        )
    assert reversed_ == b"\xffmiretni\x00"


async def test_a_long_job_on_a_live_worker_is_never_reclaimed(
    client: Client, redis_url: str, queue: str
) -> None:
    listeners = Listeners()
    attempts: list[int] = []

    @listeners.listener
    async def long(msg: Any, ctx: Context) -> str:
        attempts.append(ctx.attempt)
        await anyio.sleep(2.0)  # more than three leases
        return "done"

    async with running_worker(
        listeners, queue=queue, redis_url=redis_url, lease=0.5, heartbeat=0.1
    ):
        job_id = await client.post("x", retry=0)
        with anyio.fail_after(15):
            assert await client.block_until_result(job_id) == "done"
    assert attempts == [1]
    assert (await client.get_job(job_id)).attempt == 1


async def test_higher_priority_runs_first(client: Client, redis_url: str, queue: str) -> None:
    listeners = Listeners()
    order: list[str] = []

    @listeners.listener
    async def note(msg: str, ctx: Context) -> None:
        order.append(msg)

    await client.post("low", priority=-5)
    await client.post("normal-1")
    await client.post("high", priority=10)
    await client.post("normal-2")
    await run_until_idle(listeners, queue=queue, redis_url=redis_url, concurrency=1)
    assert order == ["high", "normal-1", "normal-2", "low"]


async def test_watch_streams_progress_in_order_then_the_outcome(
    client: Client, redis_url: str, queue: str
) -> None:
    listeners = Listeners()

    @listeners.listener
    async def train(msg: Any, ctx: Context) -> str:
        for percent in (25, 50, 75):
            await ctx.update_progress(percent, f"epoch {percent // 25}")
            await anyio.sleep(0.02)
        return "model"

    job_id = await client.post("x")
    seen: list[Any] = []
    async with anyio.create_task_group() as tg:
        with anyio.fail_after(10):
            events = client.watch(job_id)
            first = await anext(events)
            assert first.status is JobStatus.QUEUED
            tg.start_soon(partial(run_until_idle, listeners, queue=queue, redis_url=redis_url))
            async for event in events:
                seen.append(event.progress.value if event.progress else event.status)
    assert [s for s in seen if isinstance(s, int)] == [25, 50, 75]
    assert seen[-1] is JobStatus.COMPLETE
    assert JobStatus.ACTIVE in seen and seen.index(JobStatus.ACTIVE) < seen.index(25)


async def test_a_watcher_too_slow_for_every_update_still_sees_the_outcome(
    client: Client, redis_url: str, queue: str
) -> None:
    # a UI that redraws slower than a job reports: intermediate updates may be missed (the
    # stream holds 256), the outcome never is, or the watch would never end
    listeners = Listeners()

    @listeners.listener
    async def chatty(msg: Any, ctx: Context) -> str:
        for step in range(1000):
            await ctx.update_progress(step)
        return "done"

    job_id = await client.post(None, functions=["chatty"])
    events = client.watch(job_id)
    assert (await anext(events)).status is JobStatus.QUEUED
    async with running_worker(listeners, queue=queue, redis_url=redis_url):
        assert await client.block_until_result(job_id, timeout=20) == "done"  # not reading
    with anyio.fail_after(10):
        seen = [event async for event in events]
    assert seen[-1].status is JobStatus.COMPLETE
    assert 256 <= len(seen) < 1000  # a full buffer, then the outcome


async def _connections_named(store: Store, name: str) -> int:
    """The most connections of that name on one node (of a cluster, each master's)."""
    if isinstance(store.redis, RedisCluster):
        nodes = store.redis.get_primaries()
        lists = [await store.redis.client_list(target_nodes=node) for node in nodes]
    else:
        lists = [await store.redis.client_list()]
    return max(sum(1 for c in clients if c["name"] == name) for clients in lists)


async def test_awaiting_a_thousand_jobs_uses_a_bounded_number_of_connections(
    redis_url: str, queue: str
) -> None:
    listeners = _echoing()
    config = ClientConfig(queue=queue, redis_url=redis_url, max_connections=4)
    results: dict[int, int] = {}
    peak = 0
    async with Client(config=config) as client:
        ids = await client.post_many(range(1000))

        async def wait(i: int, job_id: str) -> None:
            results[i] = await client.block_until_result(job_id, timeout=60)

        async with running_worker(listeners, queue=queue, redis_url=redis_url):
            async with anyio.create_task_group() as tg:
                for i, job_id in enumerate(ids):
                    tg.start_soon(wait, i, job_id)
                await until(lambda: len(results) >= 500, 60)  # sample mid-run
                peak = await _connections_named(client.store, f"aqueue-client-{os.getpid()}")
    assert results == {i: i for i in range(1000)}
    # the pool's 4 and the one subscription; on a cluster, on each node: 4 commands at a time,
    # the direct connection, the subscription, and one reading the slot map
    assert 1 <= peak <= (7 if "cluster" in redis_url else 5)


async def test_a_late_word_that_an_attempt_is_lost_spares_the_job_s_next_attempt(
    client: Client, redis_url: str, queue: str
) -> None:
    # A heartbeat asks about attempt 1; before its reply comes back attempt 1 ends in a retry
    # and attempt 2 starts here. The reply says the job's attempt 1 is lost: true, and no
    # reason to cancel attempt 2.
    listeners = Listeners()
    second_started, release = anyio.Event(), anyio.Event()

    @listeners.listener
    async def flaky(msg: Any, ctx: Context) -> str:
        if ctx.attempt == 1:
            raise Retry(delay=0)
        second_started.set()
        await release.wait()
        return "second"

    async with running_worker(listeners, queue=queue, redis_url=redis_url) as w:
        job_id = await client.post(None, functions=["flaky"], retry=1)
        with anyio.fail_after(10):
            await second_started.wait()
        w._held.lose(job_id, 1)  # the heartbeat's late reply, about attempt 1
        release.set()
        assert await client.block_until_result(job_id, timeout=10) == "second"
    job = await client.get_job(job_id)
    assert (job.status, job.attempt) == (JobStatus.COMPLETE, 2)


async def test_text_that_is_not_valid_unicode_fails_its_job_and_not_the_worker(
    client: Client, redis_url: str, queue: str
) -> None:
    # a lone surrogate (what a bad decode with errors="surrogateescape" leaves) cannot be
    # stored as text: in an error it is kept escaped, in a short result it fails the job
    listeners = Listeners()

    @listeners.listener
    async def garbled_error(msg: Any, ctx: Context) -> None:
        raise ValueError("bad \ud800 text")

    @listeners.listener
    async def garbled_short(msg: Any, ctx: Context) -> Output:
        return Output(result=1, short="x\ud800")

    async with running_worker(listeners, queue=queue, redis_url=redis_url):
        error = await client.post(None, functions=["garbled_error"], retry=0)
        short = await client.post(None, functions=["garbled_short"], retry=0)
        for job_id in (error, short):
            with pytest.raises(JobFailed):
                await client.block_until_result(job_id, timeout=10)
    failed = await client.get_job(error)
    assert (failed.status, failed.error_message) == (JobStatus.DEAD, "bad \\ud800 text")
    refused = await client.get_job(short)
    assert refused.error_type == "aqueue.errors.MessageError"
    assert "short result" in (refused.error_message or "")


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for this error")


async def test_a_listener_that_raises_past_exception_fails_its_job_and_not_the_worker(
    client: Client, redis_url: str, queue: str
) -> None:
    # sys.exit, KeyboardInterrupt or a stray CancelledError in one listener must not stop
    # the daemon and take the jobs running beside it down with it
    listeners = Listeners()
    neighbour_may_end = anyio.Event()

    @listeners.listener
    async def neighbour(msg: Any, ctx: Context) -> str:
        await neighbour_may_end.wait()
        return "still here"

    @listeners.listener
    async def exits(msg: Any, ctx: Context) -> None:
        raise SystemExit(3)

    @listeners.listener
    async def interrupted(msg: Any, ctx: Context) -> None:
        raise KeyboardInterrupt

    @listeners.listener
    async def self_cancelled(msg: Any, ctx: Context) -> None:
        raise anyio.get_cancelled_exc_class()

    @listeners.listener
    def exits_in_a_thread(msg: Any, ctx: SyncContext) -> None:
        raise SystemExit(4)

    @listeners.listener
    async def unprintable(msg: Any, ctx: Context) -> None:
        raise _Unprintable

    raisers = ["exits", "interrupted", "self_cancelled", "exits_in_a_thread", "unprintable"]
    async with running_worker(listeners, queue=queue, redis_url=redis_url, concurrency=8) as worker:
        beside = await client.post(None, functions=["neighbour"])
        failing = {name: await client.post(None, functions=[name], retry=0) for name in raisers}
        for job_id in failing.values():
            with pytest.raises(JobFailed):
                await client.block_until_result(job_id, timeout=10)
        neighbour_may_end.set()
        assert await client.block_until_result(beside, timeout=10) == "still here"
        assert worker.running == 0
    errors = {name: (await client.get_job(job_id)) for name, job_id in failing.items()}
    # not retried: a BaseException is no error a retry could mend
    assert {name: job.status for name, job in errors.items()} == {
        **dict.fromkeys(raisers, JobStatus.FAILED),
        "unprintable": JobStatus.DEAD,  # an Exception, retried until its budget was spent
    }
    assert errors["exits"].error_type == "SystemExit"
    assert errors["self_cancelled"].error_type == "asyncio.exceptions.CancelledError"
    assert errors["unprintable"].error_message == "<str() of the error failed: RuntimeError>"


async def test_a_result_over_the_worker_s_limit_fails_its_job_and_names_the_limit(
    client: Client, redis_url: str, queue: str
) -> None:
    listeners = Listeners()

    @listeners.listener
    async def weights(msg: int, ctx: Context) -> bytes:
        return bytes(msg)

    async with running_worker(listeners, queue=queue, redis_url=redis_url, max_result_bytes=4096):
        too_big = await client.post(5000, functions=["weights"], retry=0)
        with pytest.raises(JobFailed):
            await client.block_until_result(too_big, timeout=10)
        assert await client.block_until_result(
            await client.post(4000, functions=["weights"]), timeout=10
        ) == bytes(4000)
    job = await client.get_job(too_big)
    assert (job.status, job.error_type) == (JobStatus.FAILED, "aqueue.errors.MessageTooLarge")
    message = job.error_message or ""
    assert message.startswith("result is ") and "over the limit of 4096 bytes" in message


async def test_big_results_finishing_together_are_recorded_in_calls_redis_accepts(
    tmp_path: Path, queue: str
) -> None:
    # Outcomes that end together go to Redis in one finish call, and Redis takes no argument
    # over its proto-max-bulk-len (512 MB; 2 MB here, so that 300 KB results show it): a call
    # over it was refused, sent again with more outcomes, refused again, and so on forever.
    server = RedisServer(tmp_path / "redis", extra={"proto-max-bulk-len": "2mb"})
    await anyio.to_thread.run_sync(server.start)  # (in a thread: the loop is not to block)
    listeners = Listeners()
    all_started = anyio.Event()
    started = 0

    @listeners.listener
    async def weights(msg: int, ctx: Context) -> bytes:
        nonlocal started
        started += 1
        if started == 32:
            all_started.set()
        await all_started.wait()  # all end at once
        return bytes(300_000)

    try:
        async with Client(queue, redis_url=server.url) as client:
            async with running_worker(listeners, queue=queue, redis_url=server.url, concurrency=32):
                ids = await client.post_many(list(range(32)), functions=["weights"])
                with anyio.fail_after(30):
                    for job_id in ids:
                        assert await client.block_until_result(job_id) == bytes(300_000)
    finally:
        await anyio.to_thread.run_sync(server.stop)


async def test_a_worker_told_to_stop_while_redis_is_down_stops_after_its_grace(
    private_redis: RedisServer, queue: str, caplog: pytest.LogCaptureFixture
) -> None:
    # its outcome cannot be recorded: the worker retries, but not past its grace period once
    # stopped (the job's lease then lapses, and the reaper runs it again)
    listeners = Listeners()
    may_end, started = anyio.Event(), anyio.Event()

    @listeners.listener
    async def unrecorded(msg: Any, ctx: Context) -> str:
        started.set()
        await may_end.wait()
        return "done, but Redis is away"

    async with Client(queue, redis_url=private_redis.url) as client:
        await client.post(None, functions=["unrecorded"])
    with anyio.fail_after(30):
        async with running_worker(listeners, queue=queue, redis_url=private_redis.url, grace=1):
            await started.wait()
            await anyio.to_thread.run_sync(private_redis.kill)
            may_end.set()
            await until(lambda: _tries(caplog, "recording outcomes failed") >= 2)  # and retried


async def test_maps_keyed_by_tuples_come_back_as_they_went(
    client: Client, redis_url: str, queue: str
) -> None:
    # msgpack packs a tuple key as an array, which reads back as an unhashable list: such a
    # message failed its job, its record could not be read, and such a progress value ended
    # the client's one subscription (every later block_until_result then waited forever)
    grid = {(0, 0): "origin", (1, (2, 3)): ["nested"]}
    listeners = Listeners()

    @listeners.listener
    async def walk(msg: dict[Any, Any], ctx: Context) -> dict[Any, Any]:
        await ctx.update_progress(msg)
        return msg

    assert await client.fetch_data(await client.store_data(grid)) == grid
    job_id = await client.post(grid, functions=["walk"])
    async with running_worker(listeners, queue=queue, redis_url=redis_url):
        with anyio.fail_after(10):
            progress = [e.progress.value async for e in client.watch(job_id) if e.progress]
        # (once pushed, and maybe once more as the state watch() read when it began)
        assert progress and all(value == grid for value in progress)
        assert await client.block_until_result(job_id, timeout=10) == grid
        assert await client.block_until_result(await client.post(grid, functions=["walk"])) == grid
    assert (await client.get_job(job_id)).msg == grid


async def test_an_event_the_client_cannot_read_does_not_end_its_subscription(
    client: Client, redis_url: str, queue: str
) -> None:
    listeners = _echoing()
    watched = await client.post(0, functions=["not_served_here"])
    events = client.watch(watched)
    assert (await anext(events)).status is JobStatus.QUEUED
    # progress of the watched job, in an envelope this client cannot read
    junk = msgpack.packb([watched, "progress", b"\x7fjunk", ""])
    results: list[int] = []

    async def await_it(job_id: str) -> None:
        results.append(await client.block_until_result(job_id))

    async with anyio.create_task_group() as tg:
        tg.start_soon(await_it, await client.post(2, functions=["echo"]))  # waits meanwhile
        await client.store.publish(client.store.keys.events, junk)
        async with running_worker(listeners, queue=queue, redis_url=redis_url):
            await until(lambda: results)  # the waiter's result is the condition
    assert results == [2]
    await events.aclose()


async def test_a_progress_report_during_a_redis_outage_does_not_fail_the_attempt(
    private_redis: RedisServer, queue: str
) -> None:
    # the report is lost; the work (attempt 1) goes on and its outcome is recorded
    listeners = Listeners()
    redis_down, redis_back, reported = anyio.Event(), anyio.Event(), anyio.Event()

    @listeners.listener
    async def train(msg: Any, ctx: Context) -> str:
        await ctx.update_progress(10)
        await redis_down.wait()
        await ctx.update_progress(50, "during the outage")
        reported.set()
        await redis_back.wait()
        return "trained"

    async with Client(queue, redis_url=private_redis.url) as client:
        job_id = await client.post(None, functions=["train"], retry=0)
        # a long lease: this is about the report, not a lapse
        async with running_worker(listeners, queue=queue, redis_url=private_redis.url, lease=30):
            with anyio.fail_after(20):
                await until(lambda: client.get_progress(job_id), 20)
                await anyio.to_thread.run_sync(private_redis.kill)
                redis_down.set()
                await reported.wait()
                await anyio.to_thread.run_sync(private_redis.start)
                redis_back.set()
                assert await client.block_until_result(job_id) == "trained"
        job = await client.get_job(job_id)
    assert (job.status, job.attempt) == (JobStatus.COMPLETE, 1)


async def test_a_stateful_handler_object_with_an_async_call_is_awaited(
    client: Client, redis_url: str, queue: str
) -> None:
    class Model:
        """A PiCloud-style stateful handler: loaded once, called per job."""

        def __init__(self) -> None:
            self.calls = 0

        async def __call__(self, msg: int, ctx: Context) -> int:
            self.calls += 1
            return msg * 2

    model = Model()
    listeners = Listeners()
    listeners.add(model, name="model")
    async with running_worker(listeners, queue=queue, redis_url=redis_url):
        assert await client.block_until_result(await client.post(21, functions=["model"])) == 42
    assert model.calls == 1


async def test_a_job_an_older_build_posted_with_a_bad_retry_policy_is_retried_not_fatal(
    client: Client, redis_url: str, queue: str
) -> None:
    # an older build let a NaN delay through; its spec is as it stored it
    job_id = await client.post(None, functions=["refuse"], retry=2)
    spec = await client.store.redis.hget(client.store.keys.spec, job_id)
    assert isinstance(spec, bytes)
    msg, shape = SpecShape.unpack(spec)
    nan_delays = encode([float("nan"), 2.0, float("nan"), True])
    bad = dataclasses.replace(shape, retry=nan_delays)
    await client.store.redis.hset(client.store.keys.spec, job_id, bad.pack(msg))
    async with running_worker(_echoing(refusing=True), queue=queue, redis_url=redis_url):
        with pytest.raises(JobFailed):
            await client.block_until_result(job_id, timeout=20)  # retried with default delays
        assert await client.block_until_result(await client.post(5, functions=["echo"])) == 5
    job = await client.get_job(job_id)
    assert (job.status, job.attempt) == (JobStatus.DEAD, 3)


async def _is(client: Client, job_id: str, status: JobStatus) -> bool:
    return (await client.get_job(job_id)).status is status


async def _ended(client: Client, job_id: str) -> bool:
    return (await client.get_job(job_id)).status.is_terminal


async def _counted(client: Client, status: str, at_least: int) -> bool:
    return (await client.counts())[status] >= at_least


def _tries(caplog: pytest.LogCaptureFixture, message: str) -> int:
    return sum(r.getMessage().startswith(message) for r in caplog.records)

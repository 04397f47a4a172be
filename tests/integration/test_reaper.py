"""The reaper: lapsed leases go back exactly once however many reapers run; records expire."""

from __future__ import annotations

from typing import cast

import anyio
import pytest

from aqueue import Client, JobNotFound, JobStatus
from aqueue._states import Event

pytestmark = pytest.mark.every_topology


async def test_two_reapers_at_once_requeue_each_stalled_job_exactly_once(
    redis_url: str, queue: str
) -> None:
    async with (
        Client(queue, redis_url=redis_url) as first,
        Client(queue, redis_url=redis_url) as second,  # its own connections
    ):
        ids = await first.post_many(range(1000), retry=5)
        claimed = await first.store.claim("stalled-worker", 1, 1000, ["x"])  # 1 ms leases
        assert len(claimed.jobs) == 1000
        await anyio.sleep(0.05)  # every lease has lapsed by Redis's clock
        totals = {"first": 0, "second": 0}

        async def reap(name: str, client: Client) -> None:
            while True:
                requeued, dead, _, _ = await client.store.reap(37)
                assert dead == 0
                totals[name] += requeued
                if requeued == 0:
                    return

        async with anyio.create_task_group() as tg:
            tg.start_soon(reap, "first", first)
            tg.start_soon(reap, "second", second)
        assert totals["first"] + totals["second"] == 1000
        assert totals["first"] > 0 and totals["second"] > 0  # they really ran side by side
        assert (await first.counts())["queued"] == 1000
        statuses = await first.store.statuses(ids)
        assert set(statuses) == {b"queued"}
        # held together, each is a suspect now, claimed alone: one at a time
        assert (await first.store.claim("next-worker", 60_000, 1000, ["x"])).jobs == []
        attempts = []
        for _ in ids:
            [job] = (await first.store.claim_alone("next-worker", 60_000, ["x"])).jobs
            attempts.append(job.attempt)
        assert attempts == [2] * 1000  # reclaimed once, not twice


async def test_a_lapsed_job_without_budget_is_dead_lettered_with_the_reason(
    client: Client,
) -> None:
    job_id = await client.post("x", retry=0)
    await client.store.claim("gone-worker", 1, 1, ["x"])
    await anyio.sleep(0.05)
    assert await client.store.reap(100) == (0, 1, 0, 0)
    job = await client.get_job(job_id)
    assert job.status is JobStatus.DEAD
    assert job.reason == "lease lost on attempt 1 (worker gone-worker); retry budget spent"
    assert [j.id for j in await client.dead_letters()] == [job_id]


async def test_due_jobs_are_promoted_and_finished_records_expire(client: Client) -> None:
    soon = await client.post("x", delay=0.05)
    await anyio.sleep(0.1)
    assert (await client.store.reap(100))[2] == 1
    assert (await client.get_job(soon)).status is JobStatus.QUEUED

    short_lived, kept = await client.post("y", ttl=1), await client.post("z", ttl=60)
    for job_id in (short_lived, kept):
        await client.cancel(job_id)
    assert (await client.store.reap(100))[3] == 0  # kept at least its ttl
    assert (await client.get_job(short_lived)).status is JobStatus.CANCELLED
    await anyio.sleep(1.05)
    assert (await client.store.reap(100))[3] == 1  # then swept: record, spec and all
    with pytest.raises(JobNotFound):
        await client.get_job(short_lived)
    assert not await client.store.redis.hexists(client.store.keys.spec, short_lived)
    assert (await client.get_job(kept)).msg == "z"
    key = await client.store_data(b"tmp", expiry=5)
    assert 0 < await client.store.redis.pttl(client.store.keys.data(key)) <= 5000


async def test_a_dead_worker_is_forgotten_once_its_liveness_lapses(client: Client) -> None:
    await client.store.heartbeat("ghost", 1, b"\x80", [])
    assert (await client.counts())["workers"] == 1
    await anyio.sleep(0.05)
    await client.store.reap(100)
    assert (await client.counts())["workers"] == 0


async def test_the_lease_placeholder_is_never_a_job_counted_reaped_or_claimed(
    client: Client,
) -> None:
    """A few leased jobs keep `running` and `active` in their hashtable and skiplist
    encodings (a placeholder entry holds them there, see _lib.lua), and the placeholder is
    never counted as active, never found lapsed, and never handed out as a job."""
    store, redis = client.store, client.store.redis
    await client.post_many(range(5), retry=0)
    claim = await store.claim("w", 1, 10, ["x"])  # 1 ms leases: they lapse at once
    assert len(claim.jobs) == 5
    assert await redis.object("encoding", store.keys.running) == b"hashtable"
    assert await redis.object("encoding", store.keys.active) == b"skiplist"
    assert (await client.counts())["active"] == 5
    await anyio.sleep(0.05)
    requeued, dead, _, _ = await store.reap(100)
    assert (requeued, dead) == (5, 0)  # lost together: no attempt counted (see reap.lua)
    assert (await client.counts())["active"] == 0
    assert await redis.zcard(store.keys.active) == 1  # the placeholder alone, at +inf
    assert (await store.claim("w", 60_000, 10, ["x"])).jobs == []  # suspects: claimed alone
    for _ in range(5):
        assert len((await store.claim_alone("w", 60_000, ["x"])).jobs) == 1
    assert (await store.claim_alone("w", 60_000, ["x"])).jobs == []


async def test_a_small_queue_keeps_its_specs_in_a_hashtable_through_expiry_and_purge(
    client: Client,
) -> None:
    """A new queue's first post puts the placeholder in `spec` too: a listpack of a few
    dozen specs would be scanned on every post, claim and expiry. It outlives the jobs, and a
    purged queue gets it again."""
    store, redis = client.store, client.store.redis
    [job_id] = await client.post_many([None], functions=["f"])
    assert await redis.object("encoding", store.keys.spec) == b"hashtable"
    [claimed] = (await store.claim("w", 60_000, 1, ["f"])).jobs
    assert claimed.id == job_id  # the placeholder is never handed out
    assert await store.finish("w", [claimed.outcome(Event.COMPLETE)]) == [True]
    [group] = cast(list[bytes], await redis.zrange(store.keys.expiries, 0, -1))
    await redis.zadd(store.keys.expiries, {group: 0})  # its record's time is up
    assert (await store.reap(100))[3] == 1
    assert await redis.hlen(store.keys.spec) == 1  # the placeholder alone
    await client.purge()
    await client.post_many([None], functions=["f"])
    assert await redis.object("encoding", store.keys.spec) == b"hashtable"


async def test_records_of_one_finish_expire_together_but_a_requeued_one_stays(
    client: Client,
) -> None:
    """A finish call's records go at the same time, as one entry of `expiries`. A job revived
    by requeue leaves that group: its record is not swept with the others."""
    store, redis = client.store, client.store.redis
    ids = await client.post_many(range(4), functions=["f"], ttl=60)
    jobs = {job.id: job for job in (await store.claim("w", 60_000, 4, ["f"])).jobs}
    outcomes = [jobs[ids[0]].outcome(Event.COMPLETE), jobs[ids[1]].outcome(Event.FAIL, 0, [])]
    outcomes += [jobs[job_id].outcome(Event.COMPLETE) for job_id in ids[2:]]
    assert await store.finish("w", outcomes) == [True] * 4
    assert await redis.zcard(store.keys.expiries) == 1  # one group for the call
    assert await client.requeue(ids[1]) is JobStatus.FAILED  # out of its group
    [group] = cast(list[bytes], await redis.zrange(store.keys.expiries, 0, -1))
    assert sorted(group.split(b",")) == sorted(i.encode() for i in (ids[0], *ids[2:]))
    await redis.zadd(store.keys.expiries, {group: 0})  # its time is up
    assert (await store.reap(100))[3] == 3
    for gone in (ids[0], *ids[2:]):
        with pytest.raises(JobNotFound):
            await client.get_job(gone)
    assert (await client.get_job(ids[1])).status is JobStatus.QUEUED
    assert await redis.zcard(store.keys.expiries) == 0


async def test_the_sweep_of_expired_records_stops_at_its_limit_and_the_next_goes_on(
    client: Client,
) -> None:
    store, redis = client.store, client.store.redis
    ids = await client.post_many(range(40), functions=["f"], ttl=60)
    jobs = (await store.claim("w", 60_000, 40, ["f"])).jobs
    for job in jobs:  # one finish call each: 40 groups of one
        assert await store.finish("w", [job.outcome(Event.COMPLETE)]) == [True]
    groups = cast(list[bytes], await redis.zrange(store.keys.expiries, 0, -1))
    await redis.zadd(store.keys.expiries, dict.fromkeys(groups, 0))  # all due now
    assert (await store.reap(25))[3] == 25
    assert (await store.reap(25))[3] == 15
    for job_id in ids:
        with pytest.raises(JobNotFound):
            await client.get_job(job_id)

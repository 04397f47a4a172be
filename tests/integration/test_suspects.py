"""Suspects (reap.lua): a job whose lease lapsed runs alone next, and its lost attempt counts
against its budget only where the blame is clear (it ran alone, or its worker held nothing
else). The scripts themselves, driven as a worker would; the real processes are in
tests/chaos/test_poison.py."""

from __future__ import annotations

import anyio

from aqueue import Client, Context, JobStatus, Listeners
from aqueue._redis.store import Store
from aqueue._states import Event
from aqueue.testing import RedisServer, run_until_idle


async def _lapse(store: Store, *job_ids: str) -> tuple[int, int, int, int]:
    """The leases of `job_ids` run out (long ago, by Redis's clock), and a reaper passes."""
    await store.redis.zadd(store.keys.active, dict.fromkeys(job_ids, 0))
    return await store.reap(100)


async def test_jobs_lost_together_cost_no_attempt_and_then_run_alone_one_at_a_time(
    client: Client,
) -> None:
    store = client.store
    ids = await client.post_many(["a", "b", "c"], functions=["f"], retry=0)  # one attempt each
    assert len((await store.claim("w", 60_000, 3, ["f"])).jobs) == 3
    assert await _lapse(store, *ids) == (3, 0, 0, 0)  # none dead: any of them, or none, was it
    for job_id in ids:
        job = await client.get_job(job_id)
        assert job.status is JobStatus.QUEUED and job.attempt == 1
        assert job.reason == (
            "lease lost on attempt 1 (worker w), which held other jobs: not counted against "
            "the retry budget; it runs alone next"
        )
    assert (await client.counts())["queued"] == 3

    beside = await client.post("d", functions=["f"])
    claim = await store.claim("v", 60_000, 10, ["f"])
    assert [j.id for j in claim.jobs] == [beside]  # a suspect is never claimed with others
    assert claim.suspects  # and the worker is told to drain for them
    assert await store.finish("v", [claim.jobs[0].outcome(Event.COMPLETE)]) == [True]

    first = await store.claim_alone("v", 60_000, ["f"])
    [alone] = first.jobs
    assert (alone.id, alone.attempt, alone.released) == (ids[0], 2, 1)  # the oldest first
    assert first.suspects  # two more wait
    assert await _lapse(store, alone.id) == (0, 1, 0, 0)  # it ran alone: that attempt counts
    dead = await client.get_job(alone.id)
    assert dead.status is JobStatus.DEAD and dead.error_type == "LeaseLost"
    assert dead.reason == "lease lost on attempt 2 (worker v); retry budget spent"

    for job_id, more in ((ids[1], True), (ids[2], False)):
        claim = await store.claim_alone("v", 60_000, ["f"])
        assert [j.id for j in claim.jobs] == [job_id] and claim.suspects is more
        assert await store.finish("v", [claim.jobs[0].outcome(Event.COMPLETE)]) == [True]
        assert (await client.get_job(job_id)).status is JobStatus.COMPLETE
    assert (await store.claim_alone("v", 60_000, ["f"])).jobs == []
    assert not await store.redis.exists(store.keys.suspects)


async def test_a_job_lost_alone_is_counted_and_runs_alone_until_its_budget_is_spent(
    client: Client,
) -> None:
    store = client.store
    job_id = await client.post("x", functions=["f"], retry=1)
    await store.claim("w", 60_000, 10, ["f"])
    assert await _lapse(store, job_id) == (1, 0, 0, 0)
    assert (await client.get_job(job_id)).reason == (
        "lease lost on attempt 1 (worker w); it runs alone next"
    )
    await client.post_many(range(3), functions=["f"])
    claim = await store.claim("v", 60_000, 10, ["f"])
    assert job_id not in {j.id for j in claim.jobs} and claim.suspects
    await store.finish("v", [j.outcome(Event.COMPLETE) for j in claim.jobs])
    [alone] = (await store.claim_alone("v", 60_000, ["f"])).jobs
    assert (alone.id, alone.attempt, alone.released) == (job_id, 2, 0)
    assert await _lapse(store, job_id) == (0, 1, 0, 0)  # two attempts lost, both counted


async def test_what_a_worker_holds_is_its_heartbeat_s_count_plus_its_claims_since(
    client: Client,
) -> None:
    """Jobs claimed after a worker's last heartbeat lapse later than the others: by then it
    holds only them, but it died holding more. And a worker whose jobs ended before its last
    heartbeat held only the one it died with."""
    store = client.store
    await store.heartbeat("w", 60_000, b"\x80", [])
    early = await client.post("early", functions=["f"], retry=0)
    await store.claim("w", 60_000, 1, ["f"])
    late = await client.post("late", functions=["f"], retry=0)
    await store.claim("w", 60_000, 1, ["f"])  # after its last heartbeat: it holds two
    assert await _lapse(store, early) == (1, 0, 0, 0)
    assert await _lapse(store, late) == (1, 0, 0, 0)  # not dead: it was not alone either
    assert "not counted" in ((await client.get_job(late)).reason or "")

    done, lone = await client.post_many(["done", "lone"], functions=["f"], retry=0)
    [finished, kept] = (await store.claim("v", 60_000, 2, ["f"])).jobs
    assert await store.finish("v", [finished.outcome(Event.COMPLETE)]) == [True]
    await store.heartbeat("v", 60_000, b"\x80", [(kept.id, kept.attempt)])  # holds one now
    assert await _lapse(store, kept.id) == (0, 1, 0, 0)  # alone: blamed, and dead
    assert (await client.get_job(kept.id)).status is JobStatus.DEAD
    assert {finished.id, kept.id} == {done, lone}


async def test_a_suspect_handed_back_runs_alone_again_and_one_that_ends_is_cleared(
    client: Client,
) -> None:
    store = client.store
    ids = await client.post_many(["a", "b"], functions=["f"])
    await store.claim("w", 60_000, 2, ["f"])
    await _lapse(store, *ids)
    [alone] = (await store.claim_alone("v", 60_000, ["f"])).jobs
    assert await store.finish("v", [alone.outcome(Event.RELEASE)]) == [True]  # shutdown
    assert (await store.claim("v", 60_000, 10, ["f"])).jobs == []  # still a suspect
    [again] = (await store.claim_alone("v", 60_000, ["f"])).jobs
    assert (again.id, again.attempt, again.released) == (alone.id, 3, 2)
    assert await store.finish("v", [again.outcome(Event.RETRY)]) == [True]  # it ended: cleared
    [retried] = (await store.claim("v", 60_000, 10, ["f"])).jobs
    assert retried.id == alone.id

    other = next(i for i in ids if i != alone.id)
    assert (await client.cancel(other)) is JobStatus.QUEUED
    assert not await store.redis.exists(store.keys.suspects)  # off its suspect lane
    assert (await client.counts())["queued"] == 0


async def test_as_many_workers_drain_as_suspects_wait_and_the_others_serve_on(
    client: Client,
) -> None:
    store = client.store
    job_id = await client.post("x", functions=["f"])
    await store.claim("w", 60_000, 1, ["f"])
    await _lapse(store, job_id)
    for worker in ("a", "b"):
        await store.heartbeat(worker, 60_000, b"\x80", [])  # both live
    assert (await store.claim("a", 60_000, 4, ["f"])).suspects  # a drains for the one suspect
    assert not (await store.claim("b", 60_000, 4, ["f"])).suspects  # b need not
    assert await store.redis.hexists(store.keys.idle, "b")  # and takes posts as it waits
    assert not await store.redis.hexists(store.keys.idle, "a")  # a does not
    assert not (await store.claim("x", 60_000, 4, ["g"])).suspects  # nor one that cannot run it
    [alone] = (await store.claim_alone("a", 60_000, ["f"])).jobs
    assert alone.id == job_id
    assert not await store.redis.sismember(store.keys.draining, "a")  # none left: it serves on


async def test_a_worker_drains_then_runs_each_suspect_alone_and_everything_completes_once(
    client: Client, redis_server: RedisServer, queue: str
) -> None:
    """A real Worker: suspects wait beside ordinary jobs; it runs each suspect with nothing
    else in flight, and everything completes once."""
    store = client.store
    listeners = Listeners()
    running: set[str] = set()
    seen_beside: dict[str, set[str]] = {}  # job -> the jobs running at some point beside it

    @listeners.listener
    async def f(msg: str, ctx: Context) -> str:
        running.add(msg)
        seen_beside.setdefault(msg, set()).update(running - {msg})
        await anyio.sleep(0.01)
        seen_beside[msg].update(running - {msg})
        running.discard(msg)
        return msg

    suspects = await client.post_many([f"s{n}" for n in range(3)], functions=["f"])
    await store.claim("dead-worker", 60_000, 3, ["f"])
    await _lapse(store, *suspects)
    others = await client.post_many([f"o{n}" for n in range(30)], functions=["f"])
    with anyio.fail_after(20):
        await run_until_idle(listeners, queue=queue, redis_url=redis_server.url, concurrency=4)
    for job_id in [*suspects, *others]:
        assert (await client.get_job(job_id)).status is JobStatus.COMPLETE
    for suspect in ("s0", "s1", "s2"):
        assert seen_beside[suspect] == set()  # nothing ran beside a suspect
        assert all(suspect not in ran for ran in seen_beside.values())
    assert max(len(ran) for ran in seen_beside.values()) > 0  # the others ran side by side
    stats = await store.redis.hgetall(store.keys.stats)
    assert int(stats[b"complete"]) == 33


async def test_suspect_keys_of_the_wrong_type_cost_no_claim(client: Client) -> None:
    """Planted: a `suspects` key and a worker's count that are strings of the wrong kind. A
    claim writes before it reads them, so it must not fail on them (nothing rolls back)."""
    store = client.store
    await store.redis.set(store.keys.suspects, "not a set")
    await store.redis.hset(store.keys.held("w"), "not", "a count")
    job_id = await client.post("x", functions=["f"])
    claim = await store.claim("w", 60_000, 10, ["f"])
    assert [j.id for j in claim.jobs] == [job_id] and not claim.suspects
    assert await store.finish("w", [claim.jobs[0].outcome(Event.COMPLETE)]) == [True]

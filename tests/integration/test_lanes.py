"""Lanes are indexed by the kinds of worker that can serve them (see lane_served in
aqueue/_redis/lua/_lib.lua): a claim reads only its own kind's lanes, so lanes no one can serve cost
it nothing, and a queue holds at most `max_unserved_lanes` of those, refusing posts past it."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, cast

import anyio
import pytest

from aqueue import Client, ClientConfig, Context, JobStatus, Listeners, MessageError, TooManyLanes
from aqueue._codec import decode
from aqueue._http.service import HttpConfig
from aqueue._states import Event
from aqueue.testing import RedisServer, running_worker
from benchmarks.redis_cost import dump, post_to_lanes, start_under_callgrind
from tests.integration.test_http import serving

LEASE_MS = 60_000
JUNK_LANES = 20_000


async def _unserved(client: Client) -> set[str]:
    raw = await client.store.redis.zrange(client.store.keys.unserved, 0, -1)
    return {lane.decode() for lane in cast(list[bytes], raw)}


async def _beat(
    client: Client, worker: str, listeners: list[str], lease_ms: int = LEASE_MS
) -> None:
    """What a worker's heartbeat does: it lists the worker, and its kind, as live."""
    await client.store.heartbeat(worker, lease_ms, b"\x80", [], listeners)


async def test_a_claim_costs_the_same_with_20000_lanes_it_cannot_serve(tmp_path: Path) -> None:
    # Redis's instructions, counted by callgrind (which the machine's load barely moves, unlike
    # time): ten claims in a queue with 20,000 lanes no worker serves, against ten in one with
    # none. Before lanes were indexed, each claim read and matched every lane: 250 times as many.
    # (started and stopped in a thread: the loop is not to block on it)
    server = await anyio.to_thread.run_sync(RedisServer(tmp_path, appendonly=False).start)
    try:
        async with Client("junk", redis_url=server.url) as junk:
            async with Client("clean", redis_url=server.url) as clean:
                for client in (junk, clean):
                    # its worker is live all along, as its lanes come (not listed at once)
                    await _beat(client, "w", ["noop"], lease_ms=3_600_000)
                    await client.post_many([None] * 200, functions=["noop"])
            await post_to_lanes(junk.store, (f"junk-{i}" for i in range(JUNK_LANES)))
            await junk.store.redis.save()
    finally:
        await anyio.to_thread.run_sync(server.stop)
    under_callgrind = partial(start_under_callgrind, tmp_path, cache_sim=False)
    process, port = await anyio.to_thread.run_sync(under_callgrind)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        async with Client("junk", redis_url=url) as junk, Client("clean", redis_url=url) as clean:
            for client in (junk, clean):  # (the scripts' first calls load them)
                assert len((await client.store.claim("w", LEASE_MS, 10, ["noop"])).jobs) == 10
            instructions = {}
            await anyio.to_thread.run_sync(dump, process, tmp_path, "setup")
            for client in (clean, junk):
                for _ in range(10):
                    claim = await client.store.claim("w", LEASE_MS, 10, ["noop"])
                    assert len(claim.jobs) == 10
                counts = await anyio.to_thread.run_sync(dump, process, tmp_path, client.queue)
                instructions[client.queue] = counts["Ir"] / 10
    finally:
        process.terminate()
        await anyio.to_thread.run_sync(process.wait, 30)
    clean_k, junk_k = instructions["clean"] / 1000, instructions["junk"] / 1000
    report = f"per claim: {clean_k:.0f}k instructions with no junk lanes, {junk_k:.0f}k with them"
    print(report)  # shown with pytest -s
    assert junk_k < 1.5 * clean_k, report


async def test_posts_past_the_bound_of_unserved_lanes_are_refused_naming_it(
    redis_server: RedisServer, queue: str
) -> None:
    config = ClientConfig(queue, redis_server.url, max_unserved_lanes=3)
    async with Client(config=config) as client:
        await _beat(client, "gpu-1", ["train"])
        for name in ("typo-1", "typo-2", "typo-3"):
            await client.post(None, functions=[name])
        specs = await client.store.redis.hlen(client.store.keys.spec)

        with pytest.raises(TooManyLanes) as refused:
            await client.post(None, functions=["typo-4"])
        assert isinstance(refused.value, MessageError)
        message = str(refused.value)
        assert f"queue {queue!r}" in message and "already has 3 lanes" in message
        assert "'typo-4'" in message and "max_unserved_lanes" in message
        with pytest.raises(TooManyLanes):  # a scheduled job's lane counts as well
            await client.post(None, functions=["typo-5"], delay=60)
        # nothing of the refused posts was written
        assert await client.store.redis.hlen(client.store.keys.spec) == specs
        assert await _unserved(client) == {"typo-1", "typo-2", "typo-3"}

        # lanes already counted, and lanes a live worker serves, take any number of posts
        await client.post_many([1, 2], functions=["typo-2"])
        await client.post_many([1, 2], functions=["train"])
        await client.post(None)  # any worker serves a job that names no listener
        await client.post(None, functions=["train"], delay=60)
        assert (await client.counts())["queued"] == 3 + 2 + 2 + 1


async def test_a_post_past_the_bound_over_http_is_a_422_naming_it(
    redis_server: RedisServer, queue: str
) -> None:
    config = HttpConfig(port=0, redis_url=redis_server.url, queue=queue, keepalive=0.3)
    async with serving(config) as api, Client(queue, redis_url=redis_server.url) as client:
        default = ClientConfig().max_unserved_lanes
        await post_to_lanes(client.store, (f"junk-{i}" for i in range(default)))
        refused = await api.post({"msg": None, "functions": ["one-more"]}, 422)
        assert f"already has {default} lanes" in refused["detail"]
        assert f"queue {queue!r}" in refused["detail"]
        assert len(await _unserved(client)) == default


async def test_lanes_become_servable_when_a_worker_serving_them_registers(
    redis_server: RedisServer, queue: str
) -> None:
    config = ClientConfig(queue, redis_server.url, max_unserved_lanes=2)
    async with Client(config=config) as client:
        pair = await client.post("both", functions=["resize", "crop"])
        await client.post("typo", functions=["crpo"])
        assert await _unserved(client) == {"crop,resize", "crpo"}
        with pytest.raises(TooManyLanes):
            await client.post(None, functions=["blur"])

        await _beat(client, "img-1", ["crop", "resize", "rotate"])
        assert await _unserved(client) == {"crpo"}
        later = await client.post("later", functions=["blur"])  # room again
        claim = await client.store.claim("img-1", LEASE_MS, 10, ["crop", "resize", "rotate"])
        assert [job.id for job in claim.jobs] == [pair]
        assert (await client.get_job(later)).status is JobStatus.QUEUED
        # status still counts every lane's jobs
        assert (await client.counts())["queued"] == 2
        assert (await client.store.snapshot())["queued"] == 2


async def test_a_worker_started_later_runs_the_jobs_waiting_for_it_and_lifts_the_bound(
    redis_server: RedisServer, queue: str
) -> None:
    listeners = Listeners()

    @listeners.listener
    async def resize(msg: Any, ctx: Context) -> Any:
        return msg

    @listeners.listener
    async def crop(msg: Any, ctx: Context) -> Any:
        return msg

    config = ClientConfig(queue, redis_server.url, max_unserved_lanes=1)
    async with Client(config=config) as client:
        first = await client.post("a", functions=["resize", "crop"])
        with pytest.raises(TooManyLanes):
            await client.post("b", functions=["crop"])
        async with running_worker(listeners, queue=queue, redis_url=redis_server.url):
            second = await client.post("b", functions=["crop"])  # its worker is live
            with anyio.fail_after(10):
                assert await client.block_until_result(first) == "a"
                assert await client.block_until_result(second) == "b"


async def test_a_worker_that_claims_before_its_first_heartbeat_is_served(client: Client) -> None:
    job_id = await client.post("x", functions=["f"])
    [claimed] = (await client.store.claim("w", LEASE_MS, 5, ["g", "f"])).jobs
    assert claimed.id == job_id
    # its kind is listed: a new lane it can serve is indexed for it, not unserved
    second = await client.post("y", functions=["g"])
    assert await _unserved(client) == set()
    assert [j.id for j in (await client.store.claim("w", LEASE_MS, 5, ["f", "g"])).jobs] == [second]


async def test_lanes_only_a_gone_worker_served_become_unserved(client: Client) -> None:
    await _beat(client, "ghost", ["render"], lease_ms=1)
    await _beat(client, "alive", ["train"])
    frame = await client.post("frame", functions=["render"])
    await client.post("model", functions=["train"])
    assert await _unserved(client) == set()
    with anyio.fail_after(10):
        while await _unserved(client) != {"render"}:
            await client.store.reap(100)  # the ghost's kind lapses 1 ms after its beat
            await anyio.sleep(0.01)
    kinds = await client.store.redis.zrange(client.store.keys.kinds, 0, -1)
    assert kinds == [b"train"]
    assert not await client.store.redis.exists(client.store.keys.serving("render"))
    # and a worker of that kind that comes back finds them again
    await _beat(client, "ghost", ["render"])
    assert await _unserved(client) == set()
    [job] = (await client.store.claim("ghost", LEASE_MS, 5, ["render"])).jobs
    assert job.id == frame


async def test_a_scheduled_jobs_lane_counts_until_its_jobs_leave(
    redis_server: RedisServer, queue: str
) -> None:
    config = ClientConfig(queue, redis_server.url, max_unserved_lanes=1)
    async with Client(config=config) as client:
        job_id = await client.post("soon", functions=["nobody"], delay=0.05)
        with pytest.raises(TooManyLanes):
            await client.post(None, functions=["other"])
        with anyio.fail_after(10):
            while (await client.get_job(job_id)).status is not JobStatus.QUEUED:
                await client.store.reap(100)  # promotes it once due
                await anyio.sleep(0.02)
        await client.store.reap(100)
        assert await _unserved(client) == {"nobody"}
        with pytest.raises(TooManyLanes):
            await client.post(None, functions=["other"])
        await client.cancel(job_id)  # its lane is empty: no longer counted
        assert await _unserved(client) == set()
        await client.post(None, functions=["other"])


async def test_a_lane_emptied_and_filled_again_by_a_retry_is_claimed_again(client: Client) -> None:
    first = await client.post("a", functions=["f"])
    other = await client.post("b", functions=["g"])
    jobs = {j.id: j for j in (await client.store.claim("w", LEASE_MS, 10, ["f", "g"])).jobs}
    assert set(jobs) == {first, other}
    # a claim over several lanes unlists those it emptied
    assert await client.store.redis.scard(client.store.keys.lanes) == 0
    assert await client.store.finish("w", [jobs[first].outcome(Event.RETRY)]) == [True]
    [again] = (await client.store.claim("w", LEASE_MS, 10, ["f", "g"])).jobs
    assert (again.id, again.attempt) == (first, 2)


@pytest.mark.parametrize("where", ["kinds", "unserved", "index"])
async def test_garbage_in_a_key_of_the_lane_index_costs_no_post_nor_claim(
    client: Client, where: str
) -> None:
    keys = client.store.keys
    await _beat(client, "w", ["f"])
    await client.post("before", functions=["f"])
    planted = {"kinds": keys.kinds, "unserved": keys.unserved, "index": keys.serving("f")}[where]
    await client.store.redis.delete(planted)
    await client.store.redis.set(planted, "not what aqueue keeps here")
    await client.post("typo", functions=["nobody"])
    await client.post("scheduled", functions=["nobody-either"], delay=60)
    await client.post("after", functions=["f"])
    await _beat(client, "w", ["f"])
    await client.store.reap(100)
    claimed = (await client.store.claim("w", LEASE_MS, 10, ["f"])).jobs
    assert sorted(decode(job.msg) for job in claimed) == ["after", "before"]
    assert await _unserved(client) >= {"nobody"}

"""A worker waiting for work is handed new jobs by the post itself, leased to it as a claim
would: no claim round trip. A worker that is gone, full or lacks the listeners gets none."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import anyio
import msgpack

from aqueue import Client, JobStatus
from aqueue._redis.calls import Claimed, claimed_rows
from aqueue._redis.store import Subscription
from aqueue._states import Event

LEASE_MS = 60_000


async def _wait_for_work(client: Client, worker: str, places: int, listeners: list[str]) -> None:
    """What an idle worker does: a claim that finds nothing registers it with its places."""
    claim = await client.store.claim(worker, LEASE_MS, places, listeners)
    assert claim.jobs == [] and not claim.full


@contextlib.asynccontextmanager
async def _push_channel(client: Client, worker: str) -> AsyncIterator[Subscription]:
    async with client.store.subscribe(client.store.keys.push(worker)) as sub:
        assert await sub.get(timeout=5) == (client.store.keys.push(worker), None)
        yield sub


async def _pushed(sub: Subscription) -> list[Claimed]:
    with anyio.fail_after(5):
        item = await sub.get(timeout=5)
    assert item is not None and item[1] is not None
    return claimed_rows(msgpack.unpackb(item[1], raw=True))


async def test_a_post_hands_the_job_to_a_waiting_worker_leased_to_it(client: Client) -> None:
    await _wait_for_work(client, "gpu-1", 4, ["train"])
    async with _push_channel(client, "gpu-1") as sub:
        job_id = await client.post({"epochs": 3}, functions=["train"])
        [job] = await _pushed(sub)

    assert (job.id, job.attempt, job.functions, job.max_attempts) == (job_id, 1, ("train",), 4)
    record = await client.get_job(job_id)
    assert (record.status, record.attempt, record.worker) == (JobStatus.ACTIVE, 1, "gpu-1")
    assert await client.store.redis.zscore(client.store.keys.active, job_id) is not None
    # the worker's outcome is fenced and recorded exactly as after a claim
    [accepted] = await client.store.finish("gpu-1", [job.outcome(Event.COMPLETE)])
    assert accepted and (await client.get_job(job_id)).status is JobStatus.COMPLETE


async def test_a_waiting_worker_gets_no_more_jobs_than_its_free_places(client: Client) -> None:
    await _wait_for_work(client, "gpu-1", 2, ["train"])
    async with _push_channel(client, "gpu-1") as sub:
        ids = await client.post_many([1, 2, 3], functions=["train"])
        pushed = await _pushed(sub)

    assert [job.id for job in pushed] == ids[:2]
    assert [(await client.get_job(i)).status for i in ids] == [
        JobStatus.ACTIVE,
        JobStatus.ACTIVE,
        JobStatus.QUEUED,
    ]
    assert not await client.store.redis.hexists(client.store.keys.idle, "gpu-1")  # it is full


async def test_a_big_message_is_not_pushed_but_queued_for_a_claim(client: Client) -> None:
    await _wait_for_work(client, "gpu-1", 4, ["train"])
    async with _push_channel(client, "gpu-1"):
        big = await client.post(b"w" * 100_000, functions=["train"])
        small = await client.post(b"w" * 1_000, functions=["train"])
    assert (await client.get_job(big)).status is JobStatus.QUEUED
    assert (await client.get_job(small)).status is JobStatus.ACTIVE


async def test_a_job_goes_to_its_lane_when_no_waiting_worker_has_its_listeners(
    client: Client,
) -> None:
    await _wait_for_work(client, "cpu-1", 4, ["resize"])
    async with _push_channel(client, "cpu-1"):
        job_id = await client.post(None, functions=["train"])
    assert (await client.get_job(job_id)).status is JobStatus.QUEUED
    assert await client.store.redis.hexists(client.store.keys.idle, "cpu-1")  # still waiting


async def test_a_job_handed_to_a_worker_that_is_gone_goes_to_its_lane(client: Client) -> None:
    await _wait_for_work(client, "gone-1", 4, ["train"])  # registered, then never listened

    job_id = await client.post(None, functions=["train"])

    record = await client.get_job(job_id)
    assert (record.status, record.attempt, record.worker) == (JobStatus.QUEUED, 0, None)
    assert await client.store.redis.zscore(client.store.keys.active, job_id) is None
    assert not await client.store.redis.hexists(client.store.keys.idle, "gone-1")
    claim = await client.store.claim("next-1", LEASE_MS, 4, ["train"])
    assert [(job.id, job.attempt) for job in claim.jobs] == [(job_id, 1)]

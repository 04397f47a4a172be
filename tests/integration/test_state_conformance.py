"""Every script, from every status, agrees with the transition table in aqueue/_states.py —
and after every step the job sits in exactly the one structure its status says."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import pytest

from aqueue import Client, JobStatus, RetryPolicy
from aqueue._codec import encode
from aqueue._redis.records import decode_job, new_job_fields
from aqueue._redis.store import NewJobs, Outcome, Store
from aqueue._states import Event, allowed

S = JobStatus
WORKER = "conformance-worker"


def _new(job_id: str, delay_ms: int = 0, max_attempts: int = 4) -> NewJobs:
    fields, lane, shape = new_job_fields(
        functions=None, callback=None, callback_method="GET", priority=0, timeout=None,
        retry=RetryPolicy(retries=max_attempts - 1), ttl=60,
    )  # fmt: skip
    return NewJobs(lane, 0, delay_ms, 0, False, fields, [(job_id, "", shape.pack(encode(None)))])


async def _status(store: Store, job_id: str) -> S | None:
    [raw] = await store.statuses([job_id])
    return None if raw is None else S(raw.decode())


async def _attempt(store: Store, job_id: str) -> int:
    fields = await store.job_fields(job_id)
    return decode_job(job_id, store.keys.queue, fields).attempt if fields else 0


async def _finish(store: Store, job_id: str, kind: Event) -> None:
    fields = await store.job_fields(job_id)
    job = decode_job(job_id, store.keys.queue, fields) if fields else None
    attempt, budget = (job.attempt, job.max_attempts) if job else (0, 1)
    outcome = Outcome(job_id, attempt, kind, 0, (), 60, False, budget)
    await store.finish(WORKER, [outcome])


async def _claim(store: Store, job_id: str) -> None:
    """A claim takes a job from its lane; a suspect (a job whose lease lapsed) only alone."""
    await store.claim(WORKER, 60_000, 10, ["f"])
    await store.claim_alone(WORKER, 60_000, ["f"])


async def _into(store: Store, job_id: str, status: S | None) -> None:
    """Drive a fresh job into `status` with the scripts themselves."""
    if status is None:
        return
    await store.post(_new(job_id, 60_000 if status is S.SCHEDULED else 0,
                          1 if status is S.DEAD else 4), 60_000)  # fmt: skip
    if status is S.CANCELLED:
        await store.cancel(job_id)
    if status in (S.ACTIVE, S.COMPLETE, S.FAILED, S.DEAD):
        await _claim(store, job_id)
        kind = {S.COMPLETE: Event.COMPLETE, S.FAILED: Event.FAIL, S.DEAD: Event.RETRY}.get(status)
        if kind:
            await _finish(store, job_id, kind)
    assert await _status(store, job_id) is status


async def _lapse(store: Store, job_id: str) -> None:
    await store.redis.zadd(store.keys.active, {job_id: 0})  # its lease ran out long ago
    await store.reap(100)


async def _promote(store: Store, job_id: str) -> None:
    await store.redis.zadd(store.keys.scheduled, {job_id: 0})  # its time came long ago
    await store.reap(100)


EVENTS: dict[Event, Callable[[Store, str], Awaitable[object]]] = {
    Event.POST: lambda store, job_id: store.post(_new(job_id), 60_000),
    Event.PROMOTE: _promote,
    Event.CLAIM: _claim,
    Event.COMPLETE: lambda store, job_id: _finish(store, job_id, Event.COMPLETE),
    Event.RETRY: lambda store, job_id: _finish(store, job_id, Event.RETRY),
    Event.FAIL: lambda store, job_id: _finish(store, job_id, Event.FAIL),
    Event.RELEASE: lambda store, job_id: _finish(store, job_id, Event.RELEASE),
    Event.LEASE_LAPSED: _lapse,
    Event.CANCEL: lambda store, job_id: store.cancel(job_id),
    Event.REQUEUE: lambda store, job_id: store.requeue(job_id),
}


async def _where(store: Store, job_id: str) -> set[str]:
    """Every structure that holds the job id."""
    k = store.keys
    places = set()
    for name, key in (("scheduled", k.scheduled), ("active", k.active), ("dead", k.dead)):
        if await store.redis.zscore(key, job_id) is not None:
            places.add(name)
    for lanes, lane in ((k.lanes, k.lane), (k.suspects, k.suspect_lane)):
        for sig in await store.redis.smembers(lanes):
            name = sig.decode() if isinstance(sig, bytes) else sig
            if await store.redis.zscore(lane(name), job_id) is not None:
                places.add("queued")
    return places


HOME = {S.QUEUED: {"queued"}, S.SCHEDULED: {"scheduled"}, S.ACTIVE: {"active"}, S.DEAD: {"dead"}}


@pytest.mark.parametrize("event", list(Event), ids=str)
@pytest.mark.parametrize("before", [None, *S], ids=str)
async def test_each_script_from_each_status_follows_the_table(
    client: Client, before: S | None, event: Event
) -> None:
    store = client.store
    job_id = uuid.uuid4().hex
    await _into(store, job_id, before)
    attempt_before = await _attempt(store, job_id)

    await EVENTS[event](store, job_id)

    after = await _status(store, job_id)
    expected = allowed(before, event)
    if expected:
        assert after in expected, f"{before} --{event}--> {after}, table says {set(expected)}"
    else:
        assert after is before, f"{before} --{event}--> {after}: the table forbids any change"
    assert await _where(store, job_id) == HOME.get(after, set())  # type: ignore[arg-type]
    if event is Event.CLAIM and expected:
        assert await _attempt(store, job_id) == attempt_before + 1  # the fencing token grows
    else:
        assert await _attempt(store, job_id) == attempt_before

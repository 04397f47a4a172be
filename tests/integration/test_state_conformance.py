"""Every script, from every status, takes the branch the lifecycle table in aqueue/_states.py
names for the facts it was given, and publishes the job event the table says; and after every
step the job sits in exactly the one structure its status says."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import cast

import anyio
import msgpack
import pytest

from aqueue import Client, JobStatus, RetryPolicy
from aqueue._codec import encode
from aqueue._redis.calls import NewJobs, Outcome
from aqueue._redis.records import decode_job, new_job_fields
from aqueue._redis.store import Store, Subscription
from aqueue._states import (
    BRANCHES,
    GONE,
    Event,
    Facts,
    Target,
    published,
    reads,
    take,
)

S = JobStatus
WORKER = "conformance-worker"
LATER_MS = 60_000  # a delay, or a backoff, that does not pass during a test


def _new(job_id: str, delay_ms: int = 0, max_attempts: int = 4, watched: bool = False) -> NewJobs:
    fields, lane, shape = new_job_fields(
        functions=None, callback=None, callback_method="GET", priority=0, timeout=None,
        retry=RetryPolicy(retries=max_attempts - 1), ttl=60,
    )  # fmt: skip
    job = (job_id, "", shape.pack(encode(None)))
    return NewJobs(lane, 0, delay_ms, 0, watched, fields, [job])


async def _status(store: Store, job_id: str, before: S | None) -> Target | None:
    [raw] = await store.statuses([job_id])
    if raw is None:  # never there, or there no more
        return None if before is None else GONE
    return S(raw.decode())


async def _attempt(store: Store, job_id: str) -> int:
    fields = await store.job_fields(job_id)
    return decode_job(job_id, store.keys.queue, fields).attempt if fields else 0


async def _finish(store: Store, job_id: str, kind: Event, delay_ms: int = 0) -> None:
    fields = await store.job_fields(job_id)
    job = decode_job(job_id, store.keys.queue, fields) if fields else None
    attempt, budget = (job.attempt, job.max_attempts) if job else (0, 1)
    outcome = Outcome(job_id, attempt, kind, delay_ms, (), 60, False, budget)
    await store.finish(WORKER, [outcome])


async def _claim(store: Store, job_id: str) -> None:
    """A claim takes a job from its lane; a suspect (a job whose lease lapsed) only alone."""
    await store.claim(WORKER, 60_000, 10, ["f"])
    await store.claim_alone(WORKER, 60_000, ["f"])


@contextlib.asynccontextmanager
async def _waiting_worker(store: Store) -> AsyncIterator[None]:
    """A worker waiting for work, as one is: a claim that finds nothing registers it as idle,
    and it listens on its push channel (a post hands it jobs only while someone listens)."""
    claim = await store.claim(WORKER, 60_000, 10, ["f"])
    assert claim.jobs == []
    async with store.subscribe(store.keys.push(WORKER)) as sub:
        assert await sub.get(timeout=5) == (store.keys.push(WORKER), None)
        yield


async def _into(store: Store, job_id: str, status: S | None, facts: Facts) -> None:
    """Drive a fresh job into `status` with the scripts themselves, given the facts."""
    if status is None:
        return
    spent = status is S.DEAD or facts.budget_spent  # its first attempt is its last
    delay = LATER_MS if status is S.SCHEDULED else 0
    await store.post(_new(job_id, delay, 1 if spent else 4), 60_000)
    if status is S.CANCELLED:
        await store.cancel(job_id)
    if status in (S.ACTIVE, S.COMPLETE, S.FAILED, S.DEAD):
        if facts.beside_others:  # the same claim leases its worker another job too
            await store.post(_new(uuid.uuid4().hex), 60_000)
        await _claim(store, job_id)
        kind = {S.COMPLETE: Event.COMPLETE, S.FAILED: Event.FAIL, S.DEAD: Event.RETRY}.get(status)
        if kind:
            await _finish(store, job_id, kind)
    assert await _status(store, job_id, status) is status
    if facts.watched:
        await store.watch([job_id])


async def _lapse(store: Store, job_id: str, facts: Facts) -> None:
    await store.redis.zadd(store.keys.active, {job_id: 0})  # its lease ran out long ago
    await store.reap(100)


async def _promote(store: Store, job_id: str, facts: Facts) -> None:
    await store.redis.zadd(store.keys.scheduled, {job_id: 0})  # its time came long ago
    await store.reap(100)


async def expire(store: Store, job_id: str, facts: Facts) -> None:
    """The reaper's sweep, once the finished job's time to live is up: its group is due."""
    for group in cast(list[bytes], await store.redis.zrange(store.keys.expiries, 0, -1)):
        if job_id.encode() in group.split(b","):
            await store.redis.zadd(store.keys.expiries, {group: 0})
    await store.reap(100)


async def _post(store: Store, job_id: str, facts: Facts) -> None:
    new = _new(job_id, LATER_MS if facts.delay else 0, watched=facts.watched)
    if facts.idle_worker:
        async with _waiting_worker(store):
            await store.post(new, 60_000)
    else:
        await store.post(new, 60_000)


Drive = Callable[[Store, str, Facts], Awaitable[object]]
EVENTS: dict[Event, Drive] = {
    Event.POST: _post,
    Event.PROMOTE: _promote,
    Event.CLAIM: lambda store, job_id, facts: _claim(store, job_id),
    Event.COMPLETE: lambda store, job_id, facts: _finish(store, job_id, Event.COMPLETE),
    Event.RETRY: lambda store, job_id, facts: _finish(
        store, job_id, Event.RETRY, LATER_MS if facts.delay else 0
    ),
    Event.FAIL: lambda store, job_id, facts: _finish(store, job_id, Event.FAIL),
    Event.RELEASE: lambda store, job_id, facts: _finish(store, job_id, Event.RELEASE),
    Event.LEASE_LAPSED: _lapse,
    Event.CANCEL: lambda store, job_id, facts: store.cancel(job_id),
    Event.REQUEUE: lambda store, job_id, facts: store.requeue(job_id),
    Event.PURGE: lambda store, job_id, facts: store.purge_dead(),
    Event.EXPIRE: expire,
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


HOME: dict[Target | None, set[str]] = {
    S.QUEUED: {"queued"}, S.SCHEDULED: {"scheduled"}, S.ACTIVE: {"active"}, S.DEAD: {"dead"},
}  # fmt: skip


async def _heard(store: Store, sub: Subscription) -> list[list[object]]:
    """The job events published since subscribing: read up to a marker published after them
    (one connection's messages arrive in the order Redis ran them)."""
    await store.redis.publish(store.keys.events, b"end of test")
    events: list[list[object]] = []
    with anyio.fail_after(5):
        while (item := await sub.get(timeout=5)) is None or item[1] != b"end of test":
            if item is not None and item[1] is not None:
                events.append(msgpack.unpackb(item[1]))
    return events


def _drivable(before: S | None, event: Event) -> tuple[str, ...]:
    """The facts this test sets up for an event from a status: all it can make matter, chosen
    apart from the table, so that a row that reads too few of them is caught too."""
    names = ["watched"]
    if before is S.ACTIVE:
        names += ["budget_spent", "beside_others"]
    if event in (Event.POST, Event.RETRY):
        names.append("delay")
    if event is Event.POST and before is None:  # (a waiting worker would claim a queued job)
        names.append("idle_worker")
    return tuple(names)


def _cases() -> list[tuple[S | None, Event, Facts]]:
    """Every (status, event), under every combination of the facts that may matter to it."""
    cases = []
    for before, event in itertools.product([None, *S], Event):
        names = _drivable(before, event)
        for values in itertools.product([False, True], repeat=len(names)):
            cases.append((before, event, Facts(**dict(zip(names, values, strict=True)))))
    return cases


def test_the_table_reads_only_facts_this_test_sets_up() -> None:
    for (before, event), branches in BRANCHES.items():
        assert set(reads(branches)) <= set(_drivable(before, event)), (before, event)


def case_id(case: tuple[object, object, Facts]) -> str:
    before, event, facts = case
    given = [name for name, value in dataclasses.asdict(facts).items() if value]
    return f"{before}-{event}" + "".join(f"-{name}" for name in given)


@pytest.mark.parametrize("case", _cases(), ids=case_id)
async def test_each_script_from_each_status_takes_the_branch_the_table_names(
    client: Client, case: tuple[S | None, Event, Facts]
) -> None:
    before, event, facts = case
    store = client.store
    job_id = uuid.uuid4().hex
    await _into(store, job_id, before, facts)
    attempt_before = await _attempt(store, job_id)

    async with store.subscribe(store.keys.events) as sub:
        assert await sub.get(timeout=5) == (store.keys.events, None)
        await EVENTS[event](store, job_id, facts)
        events = await _heard(store, sub)

    after = await _status(store, job_id, before)
    branch = take(before, event, facts)
    expected = before if branch is None else branch.to
    assert after == expected, f"{before} --{event}--> {after}, the table says {expected}"
    assert await _where(store, job_id) == HOME.get(after, set())
    notice = None if branch is None else published(branch, facts)
    if notice is None:
        assert events == [], f"{before} --{event}--> {after} published {events}"
    elif notice.kind == "status":
        assert [e[:3] for e in events] == [[job_id, "status", str(after)]]
    else:
        assert events == [["", "active", [job_id]]]
    if after is GONE:
        assert await store.job_fields(job_id) == {}
        assert await store.redis.hget(store.keys.spec, job_id) is None
    elif after is S.ACTIVE and before is not S.ACTIVE:  # a claim's, or a post's to a worker
        assert await _attempt(store, job_id) == attempt_before + 1  # the fencing token grows
    else:
        assert await _attempt(store, job_id) == attempt_before

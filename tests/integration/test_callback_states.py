"""Every callback script, from every callback state, takes the branch the callback table in
aqueue/_states.py names for the facts it was given; after every step the delivery sits in
exactly the one structure its state says (outbox, lease, retry), and a record that is gone is
let go of, never written again."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Awaitable, Callable

import pytest

from aqueue import Client, RetryPolicy
from aqueue._codec import encode
from aqueue._redis.calls import NewJobs, Outcome
from aqueue._redis.records import decode_job, new_job_fields
from aqueue._redis.store import Store
from aqueue._states import (
    CALLBACK_BRANCHES,
    GONE,
    STALE,
    CallbackEvent,
    CallbackReply,
    CallbackState,
    CallbackTarget,
    Event,
    Facts,
    reads,
    take_callback,
)
from tests.integration.test_state_conformance import case_id, expire

C = CallbackState
E = CallbackEvent
WORKER = "callback-conformance-worker"
LATER_MS = 60_000  # a backoff that does not pass during a test
ATTEMPTS = 3  # deliveries per outcome
CRASHES = 3  # re-tries after dispatcher crashes


async def _ended(store: Store, job_id: str) -> None:
    """The job's attempt fails, and its end goes to the outbox (finish_terminal)."""
    job = decode_job(job_id, store.keys.queue, await store.job_fields(job_id))
    outcome = Outcome(job_id, job.attempt, Event.FAIL, 0, (), 60, True, job.max_attempts)
    await store.finish(WORKER, [outcome])


async def _token(store: Store, job_id: str) -> int:
    raw = await store.redis.hget(store.keys.job(job_id), "cb_token")
    return int(raw or 0)


async def _done(store: Store, job_id: str, delivered: bool, facts: Facts) -> CallbackReply:
    most = 1 if facts.attempts_spent else ATTEMPTS
    delay = LATER_MS if facts.retry_waits else 0
    event = E.DELIVERED if delivered else E.FAILED
    return await store.callback_done(job_id, await _token(store, job_id), event, delay, most,
                                     "conformance")  # fmt: skip


async def _claim(store: Store, facts: Facts) -> list[str]:
    _, claimed = await store.claim_callbacks(60_000, 10, 0 if facts.crashes_spent else CRASHES)
    return [job_id for job_id, _ in claimed]


async def _lapse(store: Store, job_id: str, facts: Facts) -> None:
    """Its dispatcher stops mid-delivery: where it holds a lease, the lease lapses, and the
    next claim finds it."""
    if await store.redis.zadd(store.keys.callbacks_active, {job_id: 0}, xx=True, ch=True):
        await _claim(store, facts)


Drive = Callable[[Store, str, Facts], Awaitable[object]]
EVENTS: dict[CallbackEvent, Drive] = {
    E.ENDED: lambda store, job_id, facts: _ended(store, job_id),
    E.CLAIM: lambda store, job_id, facts: _claim(store, facts),
    E.DELIVERED: lambda store, job_id, facts: _done(store, job_id, True, facts),
    E.FAILED: lambda store, job_id, facts: _done(store, job_id, False, facts),
    E.LAPSED: _lapse,
    E.REQUEUE: lambda store, job_id, facts: store.requeue(job_id),
    E.EXPIRE: expire,
}


async def _post_running(store: Store, job_id: str) -> None:
    """A job with a callback, claimed: running, with no callback state yet."""
    fields, lane, shape = new_job_fields(
        functions=None, callback="https://hooks.example.org/x", callback_method="GET",
        priority=0, timeout=None, retry=RetryPolicy(retries=0), ttl=60,
    )  # fmt: skip
    new = NewJobs(lane, 0, 0, 0, False, fields, [(job_id, "", shape.pack(encode(None)))])
    await store.post(new, 60_000)
    [claimed] = (await store.claim(WORKER, 60_000, 1, ["f"])).jobs
    assert claimed.id == job_id


async def _into(store: Store, job_id: str, state: CallbackState | None, facts: Facts) -> None:
    """Drive a fresh job's callback into `state` with the scripts themselves."""
    await _post_running(store, job_id)
    if state is None:
        return
    await _ended(store, job_id)
    if state is not C.PENDING:
        assert await _claim(store, Facts()) == [job_id]
    if state is C.RETRYING:
        assert await _done(store, job_id, False, Facts(retry_waits=facts.retry_waits)) == state
    elif state in (C.DELIVERED, C.FAILED):
        spent = Facts(attempts_spent=True)
        assert await _done(store, job_id, state is C.DELIVERED, spent) == state
    assert await _state(store, job_id) == state


async def _state(store: Store, job_id: str) -> CallbackTarget:
    fields = await store.job_fields(job_id)
    if not fields:
        return GONE
    raw = fields.get("cb_state")
    return None if raw is None else C(raw.decode())


async def _where(store: Store, job_id: str) -> set[str]:
    k = store.keys
    places = set()
    if job_id.encode() in await store.redis.lrange(k.outbox, 0, -1):
        places.add("outbox")
    for name, key in (("lease", k.callbacks_active), ("retry", k.callbacks_retry)):
        if await store.redis.zscore(key, job_id) is not None:
            places.add(name)
    return places


HOME: dict[CallbackTarget, set[str]] = {
    C.PENDING: {"outbox"}, C.DELIVERING: {"lease"}, C.RETRYING: {"retry"},
}  # fmt: skip


def _drivable(before: CallbackState | None, event: CallbackEvent) -> tuple[str, ...]:
    """The facts this test sets up, chosen apart from the table (as in test_state_conformance)."""
    names = []
    if event is E.FAILED:
        names.append("attempts_spent")
    if event is E.LAPSED:
        names.append("crashes_spent")
    if before is C.RETRYING:
        names.append("retry_waits")
    return tuple(names)


def _cases() -> list[object]:
    cases: list[object] = []
    for before, event in itertools.product([None, *C], E):
        names = _drivable(before, event)
        for values in itertools.product([False, True], repeat=len(names)):
            case = (before, event, Facts(**dict(zip(names, values, strict=True))))
            cases.append(pytest.param(case, id=case_id(case)))
    return cases


def test_the_callback_table_reads_only_facts_this_test_sets_up() -> None:
    for (before, event), branches in CALLBACK_BRANCHES.items():
        assert set(reads(branches)) <= set(_drivable(before, event)), (before, event)


@pytest.mark.parametrize("case", _cases())
async def test_each_callback_script_from_each_state_takes_the_branch_the_table_names(
    client: Client, case: tuple[CallbackState | None, CallbackEvent, Facts]
) -> None:
    before, event, facts = case
    store = client.store
    job_id = uuid.uuid4().hex
    await _into(store, job_id, before, facts)
    places_before = await _where(store, job_id)

    reply = await EVENTS[event](store, job_id, facts)

    after = await _state(store, job_id)
    branch = take_callback(before, event, facts)
    expected = before if branch is None else branch.to
    assert after == expected, f"{before} --{event}--> {after}, the table says {expected}"
    if event in (E.DELIVERED, E.FAILED):  # callback_done replies with where it left it
        assert reply == (STALE if branch is None else after)
    if after is GONE:  # let go of: no claim takes it, no report writes it again
        for key in (store.keys.callbacks_active, store.keys.callbacks_retry):
            await store.redis.zadd(key, {job_id: 0}, xx=True)  # all of it due now
        assert job_id not in await _claim(store, facts)
        assert await store.callback_done(job_id, 1, E.DELIVERED, 0, ATTEMPTS, "late") is GONE
        assert not await store.redis.exists(store.keys.job(job_id))
        assert await _where(store, job_id) == set()
    elif branch is None:
        assert await _where(store, job_id) == places_before
    else:
        assert await _where(store, job_id) == HOME.get(after, set())

"""Garbage in any kind of key of a queue's keyspace (aqueue/_redis/keys.py) costs only itself: every
script and every daemon loop runs on over it, no other job or post is refused, and no job is
left in no list (DESIGN.md decision 13). Property-based: hypothesis picks what to plant where."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio
import msgpack
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from aqueue import Client, Context, JobNotFound, JobStatus, Listeners
from aqueue._output import QueueStatus
from aqueue._redis.keys import Keys
from aqueue._redis.server import free_port
from aqueue._services.callbacks import CallbackConfig
from aqueue._states import Event
from aqueue.testing import RedisServer, running_worker, until

# values that look almost right to a parser, and values that look like nothing
_TRICKY = [
    b"", b"|", b"||", b"1|", b"x|1|2", b"w|x|1", b"1|2", b"9|x", b"-1", b"1e400", b"nan",
    b"99999999999999999999", b"\xc1", b"\x01\xc1", b"\x7f", msgpack.packb([1]),
    msgpack.packb(["a"] * 8), msgpack.packb({"id": 1}), msgpack.packb([b"m", b"echo", 0]),
]  # fmt: skip
GARBAGE = st.one_of(st.sampled_from(_TRICKY), st.binary(max_size=12))

# The kinds of key, and for the job-bound ones which of the scenario's jobs they hit.
JOB_KINDS = ["spec", "running", "tries", "watched", "cblog", "outbox", "cb:active", "cb:retry"]
JOB_KINDS += ["no record"]  # its record deleted, the rest of it left behind
RECORD_FIELDS = [
    "status", "posted", "sig", "score", "prio", "ran", "released", "finished", "due", "result",
    "progress", "progress_msg", "cb", "cb_attempts", "cb_token", "cb_state", "reason",
]  # fmt: skip
QUEUE_KINDS = [
    "idle", "seq", "stats", "rate", "workers", "lanes", "lane", "scheduled", "active", "dead",
    "expiries", "outbox", "cb:active", "cb:retry", "watched", "key",
]  # fmt: skip
ROLES = ["queued", "called_back", "scheduled", "lapsed", "leased", "dead", "complete"]
BYSTANDERS = ["queued_too", "scheduled_too", "lapsed_too", "leased_too"]


@dataclass(frozen=True)
class Planting:
    kind: str  # a key kind, or "record:<field>"
    role: str | None  # the scenario job it hits (None: the queue's own key)
    value: bytes


# Every example plants garbage in every kind of key: in each of the queue's own keys, and in
# one to three keys or record fields (hypothesis picks which) of the job in each role. The
# bystanders are jobs in the same roles that no garbage touches.
JOB_GARBAGE = st.tuples(
    st.sampled_from(JOB_KINDS + [f"record:{f}" for f in RECORD_FIELDS]), GARBAGE
)
PLANTINGS = st.builds(
    lambda queue_wide, per_job: (
        [Planting(k, None, v) for k, v in queue_wide.items()]
        + [Planting(kind, role, value) for role, some in per_job.items() for kind, value in some]
    ),
    st.fixed_dictionaries({kind: GARBAGE for kind in QUEUE_KINDS}),
    st.fixed_dictionaries(
        {
            role: st.lists(JOB_GARBAGE, min_size=1, max_size=3, unique_by=lambda p: p[0])
            for role in ROLES
        }
    ),
)


async def plant(client: Client, keys: Keys, jobs: dict[str, str], planting: Planting) -> None:
    redis, value = client.store.redis, planting.value
    job_id = jobs[planting.role] if planting.role else value.hex()  # garbage names no real job
    kind = planting.kind
    writes: dict[str, Callable[[], Any]] = {
        "spec": lambda: redis.hset(keys.spec, job_id, value),
        "no record": lambda: redis.delete(keys.job(job_id)),
        "running": lambda: redis.hset(keys.running, job_id, value),
        "tries": lambda: redis.hset(keys.tries, job_id, value),
        "watched": lambda: redis.sadd(keys.watched, job_id),
        "cblog": lambda: redis.rpush(keys.callback_log(job_id), value),
        "outbox": lambda: redis.rpush(keys.outbox, job_id),
        "cb:active": lambda: redis.zadd(keys.callbacks_active, {job_id: 0}),
        "cb:retry": lambda: redis.zadd(keys.callbacks_retry, {job_id: 0}),
        "idle": lambda: redis.hset(keys.idle, "ghost", value),
        "seq": lambda: redis.set(keys.seq, value),
        "stats": lambda: redis.hset(keys.stats, "complete", value),
        "rate": lambda: _plant_rate(client, keys, value),
        "workers": lambda: _plant_worker(client, keys, value),
        "lanes": lambda: redis.sadd(keys.lanes, value),
        "lane": lambda: redis.zadd(keys.lane("echo"), {value: 0}),
        "scheduled": lambda: redis.zadd(keys.scheduled, {value: 0}),
        "active": lambda: redis.zadd(keys.active, {value: 0}),
        "dead": lambda: redis.zadd(keys.dead, {value: 0}),
        "expiries": lambda: redis.zadd(keys.expiries, {value: 0}),
        "key": lambda: redis.set(keys.idempotency("probe"), value),
    }
    if kind.startswith("record:"):
        await redis.hset(keys.job(job_id), kind.removeprefix("record:"), value)
    else:
        await writes[kind]()


async def _plant_rate(client: Client, keys: Keys, value: bytes) -> None:
    seconds, _ = await client.store.redis.time()
    bucket = keys.rate(str(int(seconds) // 10))
    await client.store.redis.hset(bucket, "complete", value)


async def _plant_worker(client: Client, keys: Keys, value: bytes) -> None:
    await client.store.redis.zadd(keys.workers, {"ghost": 2**50})
    await client.store.redis.set(keys.worker("ghost"), value)


def _listeners() -> Listeners:
    listeners = Listeners()

    @listeners.listener
    async def echo(msg: Any, ctx: Context) -> Any:
        await ctx.update_progress(50)
        return msg

    return listeners


async def setup_jobs(client: Client) -> dict[str, str]:
    """A job in each role: dead-lettered, complete, lapsed (requeued from a worker that died),
    waiting, called back, scheduled, leased to a worker that died (for the reaper to find).
    (A claim takes the best and oldest: each is claimed as it is posted.)"""
    store = client.store
    jobs = {"dead": await client.post("d", functions=["echo"], retry=0)}
    # alone on its worker, so its lost lease counts (reap.lua): dead; the two lapsed together
    # below are not charged, and wait as suspects
    assert len((await store.claim("gone-alone", 1, 1, ["echo"])).jobs) == 1
    jobs["complete"] = await client.post("done", functions=["echo"])
    [claimed] = (await store.claim("done-worker", 60_000, 1, ["echo"])).jobs
    done = claimed.outcome(Event.COMPLETE, 0, ["result", b"\x01\xa1x"])
    assert await store.finish("done-worker", [done]) == [True]
    jobs["lapsed"] = await client.post("l", functions=["echo"])
    jobs["lapsed_too"] = await client.post("l2", functions=["echo"])
    assert len((await store.claim("gone", 1, 2, ["echo"])).jobs) == 2
    for role in ("queued", "queued_too"):
        jobs[role] = await client.post(role, functions=["echo"])
    closed = f"http://127.0.0.1:{free_port()}/hook"  # a callback nobody answers
    jobs["called_back"] = await client.post("c", functions=["echo"], callback=closed)
    for role in ("scheduled", "scheduled_too"):
        jobs[role] = await client.post(role, functions=["echo"], delay=0.1)
    requeued = dead = 0
    with anyio.fail_after(10):
        while (requeued, dead) != (2, 1):  # the leases lapse: two requeued, one dead
            reaped = await store.reap(100)
            requeued, dead = requeued + reaped[0], dead + reaped[1]
            await anyio.sleep(0.01)
    for role in ("leased", "leased_too"):  # first (by priority): their leases lapse later
        jobs[role] = await client.post(role, functions=["echo"], priority=10)
    assert len((await store.claim("gone", 1, 2, ["echo"])).jobs) == 2
    return jobs


async def scenario(url: str, plantings: list[Planting]) -> None:
    queue = "g-" + uuid.uuid4().hex[:12]
    async with Client(queue, redis_url=url) as client:
        keys = client.store.keys
        jobs = await setup_jobs(client)
        for planting in plantings:
            await plant(client, keys, jobs, planting)
        await QueueStatus.read(client.store, queue)  # what `aqueue status` and GET /queues read
        # the scripts no daemon loop runs (each of those must not fail: no RedisUnavailable)
        await client.store.cancel(jobs["queued"])
        await client.store.requeue(jobs["dead"])
        await client.store.watch(list(jobs.values()))
        callbacks = CallbackConfig(timeout=0.2, attempts=2, backoff=0.01, lease=1.0, idle_wait=0.1)
        async with running_worker(
            _listeners(), queue=queue, redis_url=url, callbacks=callbacks, lease=1.0
        ):
            with anyio.fail_after(10):
                # posts are not refused, and run: plain, keyed, and a batch
                probes = [await client.post(1, functions=["echo"])]
                probes.append(await client.post(2, functions=["echo"], key="probe"))
                probes += await client.post_many([3, 4], functions=["echo"])
                assert [await client.block_until_result(p) for p in probes] == [1, 2, 3, 4]
                # every job ends: none is left in no list (the bad one costs itself alone),
                # but one whose own status was overwritten (it may say anything)
                garbled = {jobs[p.role] for p in plantings if p.role and p.kind == "record:status"}
                for job_id in set(jobs.values()) - garbled:
                    await until(partial(_ended, client, job_id))
        for role in BYSTANDERS:  # the jobs no garbage was planted on ran as ever
            assert (await client.get_job(jobs[role])).status is JobStatus.COMPLETE, role
        for job_id in jobs.values():  # and every record reads, as do the dead letters
            with contextlib.suppress(JobNotFound):  # but one deleted
                await client.get_job(job_id)
        await client.dead_letters()
        assert await client.store.purge_dead() >= 0
        await client.store.purge_queue()


async def _ended(client: Client, job_id: str) -> bool:
    """Its record says it finished, or it has none (deleted). (Its live status would say
    "active" for good where a `running` entry was planted on a finished job: no list holds
    it, no script looks.)"""
    status = await client.store.redis.hget(client.store.keys.job(job_id), "status")
    return status in (None, b"complete", b"failed", b"dead", b"cancelled")


@settings(
    max_examples=30,  # under a second each: the whole test stays well under a minute
    deadline=None,
    derandomize=True,  # the same examples on every run: no flaky CI
    database=None,
    # no shrinking: each try of a failing example waits out its 10 s, and the example as
    # found names every planting anyway
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)
@given(plantings=PLANTINGS)
def test_garbage_in_any_key_stops_no_daemon_and_costs_no_other_job_or_post(
    redis_server: RedisServer, plantings: list[Planting]
) -> None:
    anyio.run(scenario, redis_server.url, plantings)

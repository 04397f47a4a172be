"""A web app posts jobs, reads them back, and refuses bad input before it reaches Redis."""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import anyio
import pytest

from aqueue import (
    Client,
    InvalidTransition,
    JobFailed,
    JobNotFound,
    JobStatus,
    MessageError,
    MessageTooLarge,
    ResultTimeout,
    RetryPolicy,
)
from aqueue._codec import encode
from aqueue._redis.calls import NewJobs
from aqueue._redis.records import new_job_fields
from aqueue._states import Event
from aqueue.config import ClientConfig

pytestmark = pytest.mark.every_topology


async def test_post_returns_an_unguessable_id_and_the_record_says_queued(client: Client) -> None:
    first = await client.post({"my_data": 1234}, functions=["train"])
    second = await client.post({"my_data": 1234}, functions=["train"])
    assert first != second and len(first) == 32
    assert int(first, 16) != int(second, 16) - 1  # not sequential

    job = await client.get_job(first)
    assert job.status is JobStatus.QUEUED
    assert job.msg == {"my_data": 1234}
    assert job.functions == ("train",)
    assert job.attempt == 0 and job.max_attempts == 4
    assert job.posted_at == pytest.approx(time.time(), abs=5)
    assert job.started_at is None and job.result is None and job.progress is None
    assert job.waiting_for == ("train",)
    assert job.reason is not None and "no live worker" in job.reason


async def test_unknown_ids_are_not_found(client: Client) -> None:
    with pytest.raises(JobNotFound, match="nope"):
        await client.get_job("nope")
    with pytest.raises(JobNotFound):
        await client.block_until_result("nope", timeout=1)
    with pytest.raises(JobNotFound):
        await client.cancel("nope")


async def test_a_message_msgpack_cannot_encode_is_refused_naming_its_type(client: Client) -> None:
    class Weights:
        pass

    with pytest.raises(MessageError, match=r"Weights"):
        await client.post({"w": Weights()})
    with pytest.raises(MessageError, match=r"message 1 .*set"):
        await client.post_many([1, {1, 2}, 3])
    assert (await client.counts())["queued"] == 0  # nothing of the batch was accepted


async def test_an_oversized_message_is_refused_with_its_size_and_the_limit(
    redis_url: str, queue: str
) -> None:
    config = ClientConfig(queue=queue, redis_url=redis_url, max_message_bytes=1024)
    async with Client(config=config) as client:
        with pytest.raises(MessageTooLarge, match=r"2\d\d\d bytes .* limit of 1024"):
            await client.post(b"x" * 2000)
        assert (await client.counts())["queued"] == 0


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"functions": "train"}, "functions must be a list"),
        ({"functions": ["no,commas"]}, "listener name"),
        ({"priority": 101}, "priority"),
        ({"priority": "high"}, "priority"),
        ({"delay": -1}, "delay"),
        ({"at": datetime(2030, 1, 1)}, "timezone-aware"),
        ({"timeout": 0}, "timeout"),
        ({"callback": "ftp://example.test/x"}, "http"),
        ({"callback": "not a url"}, "callback"),
        ({"callback": "http://\x00/"}, "no valid host name"),
        ({"callback": "http://a b/"}, "no valid host name"),
        ({"retry": -1}, "retries"),
        ({"ttl": 0}, "ttl"),
        ({"ttl": 0.0001}, "ttl must be from 1"),
        ({"ttl": 1e30}, "ten years"),
        ({"key": "\udc80"}, "lone surrogate"),
        # each of these got past a `< 0` test and failed as a bare ValueError or OverflowError
        ({"delay": float("nan")}, "delay must be a number of seconds"),
        ({"delay": float("inf")}, "delay must be a number of seconds"),
        ({"delay": 1e30}, "delay must be a number of seconds"),
        ({"at": float("nan")}, "epoch seconds"),
        ({"at": float("inf")}, "epoch seconds"),
        ({"timeout": float("nan")}, "timeout must be a number of seconds"),
        ({"timeout": float("inf")}, "timeout must be a number of seconds"),
        ({"timeout": 0.0001}, "timeout must be a number of seconds from 0.001"),
    ],
)
async def test_bad_options_are_refused_naming_the_option(
    client: Client, options: dict[str, object], complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        await client.post("x", **options)  # type: ignore[arg-type]
    assert (await client.counts())["queued"] == 0


@pytest.mark.parametrize(
    ("call", "complaint"),
    [
        (lambda c: c.store_data(1, expiry=float("nan")), "expiry must be a number of seconds"),
        (lambda c: c.store_data(1, expiry=float("inf")), "expiry must be a number of seconds"),
        (lambda c: c.store_data(1, expiry="5"), "expiry must be a number of seconds"),
        (lambda c: c.store_data(1, expiry=True), "expiry must be a number of seconds"),
        # Redis refused these, and the refusal read as an outage (RedisUnavailable)
        (lambda c: c.store_data(1, expiry=0.0001), "expiry must be a number of seconds"),
        (lambda c: c.store_data(1, expiry=1e30), "expiry must be a number of seconds"),
        (lambda c: c.store_data(1, key=""), "key must be a non-empty string"),  # made one up
        (lambda c: c.get_job("\ud800"), "job id .* lone surrogate"),
        (lambda c: c.cancel("\ud800"), "job id .* lone surrogate"),
        (lambda c: c.block_until_result("x", timeout=float("nan")), "timeout must be"),
        (lambda c: c.block_until_result("x", timeout="1"), "timeout must be"),
        (lambda c: c.dead_letters("a"), "offset must be an int"),
        (lambda c: c.dead_letters(0, -1), "count must be an int"),
    ],
)
async def test_bad_arguments_to_reads_and_data_are_refused_naming_them(
    client: Client, call: Callable[[Client], Awaitable[object]], complaint: str
) -> None:
    with pytest.raises(MessageError, match=complaint):
        await call(client)


async def test_options_once_accepted_let_no_lookalike_through(client: Client) -> None:
    # an option set is checked once and remembered: True equals 1, yet is no priority
    await client.post("x", priority=1, timeout=1, ttl=1)
    lookalikes: list[dict[str, Any]] = [{"priority": True}, {"timeout": True}, {"ttl": True}]
    for lookalike in lookalikes:
        with pytest.raises(ValueError, match=next(iter(lookalike))):
            await client.post("x", **{"priority": 1, "timeout": 1, "ttl": 1, **lookalike})
    assert (await client.counts())["queued"] == 1


async def test_a_key_makes_a_second_post_return_the_first_job(client: Client) -> None:
    first = await client.post("a", key="order-17")
    again = await client.post("b", key="order-17")
    other = await client.post("c", key="order-18")
    assert again == first and other != first
    assert (await client.get_job(first)).msg == "a"
    assert (await client.counts())["queued"] == 2


async def test_a_batch_sent_again_after_a_lost_reply_is_not_posted_twice(client: Client) -> None:
    # redis-py resends a command whose reply was lost: the second send must change nothing,
    # even after a job of the batch has started, and answer with the same ids.
    fields, lane, shape = new_job_fields(
        functions=("f",), callback=None, callback_method="GET", priority=0, timeout=None,
        retry=RetryPolicy(retries=0), ttl=60,
    )  # fmt: skip
    jobs = NewJobs(
        lane, 0, 0, 0, False, fields,
        [(os.urandom(16).hex(), key, shape.pack(encode(0))) for key in ("", "k", "")],
    )  # fmt: skip
    ids = await client.store.post(jobs, 60_000)
    await client.store.claim("worker-1", 60_000, 1, ["f"])

    assert await client.store.post(jobs, 60_000) == ids
    assert (await client.get_job(ids[0])).status is JobStatus.ACTIVE
    counts = await client.counts()
    assert (counts["queued"], counts["active"]) == (2, 1)


async def test_an_outcome_sent_again_after_a_lost_reply_is_not_called_refused(
    client: Client,
) -> None:
    # A worker resends outcomes whose reply was lost; the first send may have been recorded.
    # That is not the fence refusing a stale attempt (which the worker would log as one).
    done, failed, retried = await client.post_many(range(3), functions=["f"])
    [a, b, c] = (await client.store.claim("worker-1", 60_000, 3, ["f"])).jobs
    outcomes = [
        a.outcome(Event.COMPLETE, 0, ["result", encode(1)]),
        b.outcome(Event.FAIL, 0, ["err_type", "ValueError"]),
        c.outcome(Event.RETRY, 0, ["err_type", "ValueError"]),
    ]
    assert await client.store.finish("worker-1", outcomes) == [True, True, True]
    # the complete and the failure are recognised; a retry's job waits again, and a retry
    # sent again cannot be told from a stale one: refused
    assert await client.store.finish("worker-1", outcomes) == [True, True, False]
    assert (await client.get_job(done)).status is JobStatus.COMPLETE
    assert (await client.get_job(failed)).status is JobStatus.FAILED
    assert (await client.get_job(retried)).status is JobStatus.QUEUED
    assert (await client.store.finish("worker-2", outcomes[:1])) == [False]  # not its attempt


async def test_one_finish_records_outcomes_of_every_shape_each_on_its_own_job(
    client: Client,
) -> None:
    # finish.lua reads a batch's outcomes one after another from one packed stream: an
    # outcome with no fields, one with many or with a large value, one refused by the fence
    # or scheduled again must not shift the next
    ids = await client.post_many(range(6), functions=["f"])
    jobs = {job.id: job for job in (await client.store.claim("worker-1", 60_000, 6, ["f"])).jobs}
    first, released, wide, later, stale, last = (jobs[job_id] for job_id in ids)
    big = "x" * 100_000
    many = [item for k in range(20) for item in (f"extra_{k}", str(k))]
    outcomes = [
        first.outcome(Event.COMPLETE, 0, ["result", encode("first"), "short", big]),
        released.outcome(Event.RELEASE),
        wide.outcome(Event.FAIL, 0, ["err_type", "ValueError", "err_msg", "wide", *many]),
        later.outcome(Event.RETRY, 60_000, ["err_type", "ValueError", "err_msg", "later"]),
        replace(stale.outcome(Event.COMPLETE, 0, ["result", encode("stale")]), attempt=2),
        last.outcome(Event.COMPLETE, 0, ["result", encode("last")]),
    ]
    assert await client.store.finish("worker-1", outcomes) == [True] * 4 + [False, True]
    done = await client.get_job(ids[0])
    assert (done.status, done.result, done.short_result) == (JobStatus.COMPLETE, "first", big)
    assert (await client.get_job(ids[1])).status is JobStatus.QUEUED
    failed = await client.get_job(ids[2])
    assert (failed.status, failed.error_message) == (JobStatus.FAILED, "wide")
    assert await client.store.redis.hget(client.store.keys.job(ids[2]), "extra_19") == b"19"
    scheduled = await client.get_job(ids[3])
    assert (scheduled.status, scheduled.error_message) == (JobStatus.SCHEDULED, "later")
    assert (await client.get_job(ids[4])).status is JobStatus.ACTIVE  # its attempt 1 runs on
    assert (await client.get_job(ids[5])).result == "last"


async def test_outcomes_are_counted_for_all_time_and_in_ten_second_buckets_that_expire(
    client: Client,
) -> None:
    ids = await client.post_many(range(3), functions=["f"])
    jobs = {job.id: job for job in (await client.store.claim("worker-1", 60_000, 3, ["f"])).jobs}
    await client.store.finish("worker-1", [jobs[ids[0]].outcome(Event.COMPLETE)])
    await client.store.finish(
        "worker-1", [jobs[ids[1]].outcome(Event.COMPLETE), jobs[ids[2]].outcome(Event.FAIL, 0, [])]
    )
    snapshot = await client.store.snapshot()
    assert snapshot["totals"] == {"posted": 3, "complete": 2, "failed": 1}
    assert sum(bucket.get("complete", 0) for bucket in snapshot["last_minute"]) == 2
    buckets = [
        key async for key in client.store.redis.scan_iter(match=f"{client.store.keys.prefix}rate:*")
    ]
    assert buckets  # the ones this minute's outcomes went to, each with its time to live
    for bucket in buckets:
        assert 0 < await client.store.redis.pttl(bucket) <= 130_000


async def test_status_ages_the_job_waiting_longest_not_the_next_to_run(client: Client) -> None:
    # A low-priority job posted first waits behind urgent ones posted later, in its lane and
    # in another: the queue's oldest waiting job is the starving one, not a lane's head.
    starving = await client.post("bulk", functions=["f"], priority=-50)
    await anyio.sleep(0.01)
    urgent = await client.post("urgent", functions=["f"], priority=50)
    await client.post("urgent elsewhere", functions=["g"], priority=10)
    snapshot = await client.store.snapshot()
    assert snapshot["queued"] == 3
    posted = (await client.get_job(starving)).posted_at
    assert snapshot["oldest_queued_ms"] == round(posted * 1000)
    [first] = (await client.store.claim("worker-1", 60_000, 1, ["f", "g"])).jobs
    assert first.id == urgent  # the order of work is by priority still


async def test_a_record_in_a_pre_release_layout_costs_only_its_own_job(client: Client) -> None:
    # Before 0.1.0 a record kept `posted`, `score` and `sig` as fields of their own; now
    # `posted` is "ms|score|sig" (wire.Posted). Such a record is one this build cannot read:
    # it is flagged, and its job is buried when it is to wait again, as any unreadable one.
    old, fine = await client.post_many(["a", "b"], functions=["f"])
    redis, keys = client.store.redis, client.store.keys
    packed = cast(bytes, await redis.hget(keys.job(old), "posted"))
    ms, score, sig = packed.split(b"|")
    await redis.hset(keys.job(old), mapping={"posted": ms, "score": score, "sig": sig})
    job = await client.get_job(old)
    assert (job.status, job.functions, job.posted_at) == (JobStatus.QUEUED, ("f",), 0)
    assert set(job.unreadable) == {"posted"}
    claimed = (await client.store.claim("worker-1", 60_000, 2, ["f"])).jobs
    assert [c.id for c in claimed] == [old, fine]
    assert await client.store.finish(
        "worker-1", [c.outcome(Event.RETRY, 0, []) for c in claimed]
    ) == [
        True,
        True,
    ]
    reaped = await client.store.reap_pass(100)
    assert reaped.buried == [(old, "its lane cannot be read from its record (posted)")]
    assert (await client.get_job(old)).status is JobStatus.DEAD
    assert [j.id for j in (await client.store.claim("worker-1", 60_000, 2, ["f"])).jobs] == [fine]


async def test_waiting_on_a_job_whose_queue_is_purged_ends_with_job_not_found(
    client: Client, redis_url: str, queue: str
) -> None:
    with pytest.raises(ResultTimeout):  # nothing runs this queue; now the client listens
        await client.block_until_result(await client.post(0), timeout=0.05)
    job_id = await client.post(1)  # posted watched: awaiting it asks Redis nothing
    async with Client(queue, redis_url=redis_url) as admin:
        await admin.purge()
    with anyio.fail_after(10), pytest.raises(JobNotFound):
        await client.block_until_result(job_id)


async def test_post_many_enqueues_a_batch_in_order(client: Client) -> None:
    ids = await client.post_many(range(100), functions=["f"])
    assert len(set(ids)) == 100
    assert [(await client.get_job(i)).msg for i in ids[:3]] == [0, 1, 2]
    assert (await client.counts())["queued"] == 100


async def test_delay_and_at_schedule_a_job(client: Client) -> None:
    later = await client.post("x", delay=60)
    at = await client.post("y", at=datetime.now(UTC) + timedelta(hours=1))
    for job_id, seconds in ((later, 60), (at, 3600)):
        job = await client.get_job(job_id)
        assert job.status is JobStatus.SCHEDULED
        assert job.due_at == pytest.approx(job.posted_at + seconds, abs=5)
    assert (await client.counts())["scheduled"] == 2


async def test_a_cancelled_queued_job_cannot_be_cancelled_twice(client: Client) -> None:
    job_id = await client.post("x")
    assert await client.cancel(job_id) is JobStatus.QUEUED
    assert (await client.get_job(job_id)).status is JobStatus.CANCELLED
    with pytest.raises(InvalidTransition, match="cancelled"):
        await client.cancel(job_id)
    assert (await client.counts())["queued"] == 0


async def test_binary_data_round_trips_byte_for_byte(client: Client) -> None:
    blob = bytes(range(256)) * 100
    key = await client.store_data({"weights": blob, "name": "w"}, expiry=60)
    assert await client.fetch_data(key) == {"weights": blob, "name": "w"}
    await client.store_data(b"\x00\xff", key="fixed")
    assert await client.fetch_data("fixed") == b"\x00\xff"


async def test_purging_app_leaves_app2_untouched(redis_url: str) -> None:
    async with (
        Client("app", redis_url=redis_url) as app,
        Client("app2", redis_url=redis_url) as app2,
    ):
        await app.purge()
        await app2.purge()
        await app.post_many(range(10))
        kept = await app2.post_many(range(7))
        await app2.store_data(b"keep", key="k")
        assert await app.purge() > 0
        assert (await app.counts())["queued"] == 0
        assert (await app2.counts())["queued"] == 7
        assert (await app2.get_job(kept[0])).msg == 0
        assert await app2.fetch_data("k") == b"keep"
        await app2.purge()


async def test_block_until_result_waits_only_for_its_own_job_in_its_own_queue(
    redis_url: str, queue: str
) -> None:
    other_queue = queue + "-other"
    async with (
        Client(queue, redis_url=redis_url) as client,
        Client(other_queue, redis_url=redis_url) as other,
    ):
        mine = await client.post("mine")
        theirs = await other.post("theirs")
        with pytest.raises(JobNotFound):  # an id from another namespace is not found here
            await client.block_until_result(theirs, timeout=1)
        # finish the other queue's job and an unrelated job here: the waiter must not wake
        await other.cancel(theirs)
        unrelated = await client.post("unrelated")
        await client.cancel(unrelated)
        with pytest.raises(ResultTimeout, match=r"still queued after waiting 0\.3 s"):
            await client.block_until_result(mine, timeout=0.3)
        await client.cancel(mine)
        with pytest.raises(JobFailed, match="cancelled"):
            await client.block_until_result(mine, timeout=5)
        await other.purge()

"""Bad data costs only itself: garbage in a queue's keys or on its channels fails or skips that
one item, with a reason, and every daemon goes on serving the rest (DESIGN.md decision 13)."""

from __future__ import annotations

import logging
from functools import partial

import anyio
import msgpack
import pytest

from aqueue import Client, Context, JobNotFound, Listeners, RedisUnavailable, UnreadableData
from aqueue._http.service import HttpConfig
from aqueue._output import QueueStatus
from aqueue._redis.records import SpecShape
from aqueue._services.reaper import reap_once
from aqueue._states import Event
from aqueue.testing import RedisServer, running_worker, until
from tests.integration.test_http import serving


def _echo() -> Listeners:
    listeners = Listeners()

    @listeners.listener
    async def echo(msg: object, ctx: Context) -> object:
        return msg

    return listeners


async def test_garbage_on_every_channel_a_worker_hears_is_ignored_and_it_serves_on(
    client: Client, redis_server: RedisServer, queue: str
) -> None:
    keys = client.store.keys
    async with running_worker(_echo(), queue=queue, redis_url=redis_server.url) as worker:
        assert await client.block_until_result(await client.post(1, functions=["echo"])) == 1
        junk = [b"x", b"\xc1", msgpack.packb(["cancel"]), msgpack.packb(["cancel", [1]])]
        junk += [msgpack.packb([b"id", b"1", 0, b"\xc1"]), msgpack.packb(7)]
        for channel in (keys.control, keys.push(worker.id), keys.wake, keys.callbacks):
            for data in junk:
                assert await client.store.redis.publish(channel, data) == 1  # the worker heard
        # the worker read them all (each channel's messages come in order) and still serves
        with anyio.fail_after(10):
            assert await client.block_until_result(await client.post(2, functions=["echo"])) == 2


async def test_a_malformed_tries_entry_loses_no_job_of_the_claim(client: Client) -> None:
    keys = client.store.keys
    ids = await client.post_many(range(10), functions=["echo"])
    await client.store.redis.hset(keys.tries, ids[3], "not|a count")
    claim = await client.store.claim("w", 60_000, 10, ["echo"])
    assert sorted(job.id for job in claim.jobs) == sorted(ids)  # all taken, none left behind
    assert {job.attempt for job in claim.jobs} == {1}  # an unreadable entry counts as none
    assert (await client.counts())["active"] == 10


@pytest.mark.parametrize("kind", ["tries", "watched", "running", "active", "idle", "scheduled"])
async def test_a_key_of_the_wrong_type_in_a_claims_way_is_taken_as_absent_and_it_takes_every_job(
    client: Client, kind: str
) -> None:
    keys = client.store.keys
    ids = await client.post_many(range(10), functions=["echo"])
    await client.store.redis.set(getattr(keys, kind), "a string where a hash or set belongs")
    claim = await client.store.claim("w", 60_000, 10, ["echo"])
    assert sorted(job.id for job in claim.jobs) == sorted(ids)
    assert (await client.counts())["active"] == 10


@pytest.mark.parametrize("key", ["lane:echo", "lanes", "idle", "scheduled"])
async def test_a_post_meets_a_key_of_the_wrong_type_as_absent_and_its_job_runs(
    client: Client, key: str
) -> None:
    """A refused post left its record and spec behind, in no list (and every later post of the
    queue was refused, as a 503 'Redis unavailable')."""
    await client.store.redis.set(client.store.keys.prefix + key, "a string")
    ids = [await client.post(1, functions=["echo"]), await client.post(2, functions=["echo"])]
    ids.append(await client.post(3, functions=["echo"], delay=0.001))
    with anyio.fail_after(10):
        taken: list[str] = []
        while len(taken) < 3:
            taken += [job.id for job in (await client.store.claim("w", 60_000, 10, ["echo"])).jobs]
    assert sorted(taken) == sorted(ids)


async def test_the_reaper_meets_a_suspect_lane_of_the_wrong_type_as_absent(
    client: Client,
) -> None:
    """reap.lua set a lapsed job queued, then failed on the suspect lane: in no list."""
    keys = client.store.keys
    ids = await client.post_many([1, 2], functions=["echo"])
    assert len((await client.store.claim("gone", 1, 2, ["echo"])).jobs) == 2
    await client.store.redis.set(keys.prefix + "suspect:echo", "a string")
    await client.store.redis.set(keys.prefix + "suspects", "a string")
    with anyio.fail_after(10):
        while (await client.counts())["active"]:
            await client.store.reap(100)
            await anyio.sleep(0.01)
    assert sorted(await client.store.redis.zrange(keys.prefix + "suspect:echo", 0, -1)) == sorted(
        i.encode() for i in ids
    )


@pytest.mark.parametrize("kind", ["spec"])
async def test_a_spec_key_of_the_wrong_type_fails_the_claim_with_every_job_still_queued(
    client: Client, kind: str
) -> None:
    """A claim took its jobs off their lane before it read their specs and wrote their leases:
    a `spec` (or `running`) key of the wrong type then failed the script with the jobs in no
    list (0 queued, 0 active). The specs are the jobs themselves: that one fails loudly."""
    keys = client.store.keys
    for functions in (["echo"], ["other"]):  # one lane, then several (the merging path)
        ids = await client.post_many(range(5), functions=functions)
        saved = await client.store.redis.dump(getattr(keys, kind))
        await client.store.redis.set(getattr(keys, kind), "a string where a hash belongs")
        with pytest.raises(RedisUnavailable, match="WRONGTYPE"):  # retried by the worker
            await client.store.claim("w", 60_000, 10, ["echo", "other"])
        await client.store.redis.delete(getattr(keys, kind))
        if saved is not None:
            await client.store.redis.restore(getattr(keys, kind), 0, saved)
        claim = await client.store.claim("w", 60_000, 10, ["echo", "other"])
        assert set(ids) <= {job.id for job in claim.jobs}  # every one was still on its lane


async def test_a_malformed_idle_entry_refuses_no_post_and_leaves_no_orphan(
    client: Client,
) -> None:
    keys = client.store.keys
    await client.store.redis.hset(keys.idle, "ghost", "garbage")
    job_id = await client.post(1, functions=["echo"])
    assert (await client.get_job(job_id)).status == "queued"
    assert await client.store.redis.hlen(keys.spec) == 2  # its spec and the placeholder
    assert (await client.counts())["queued"] == 1


async def test_garbage_counters_refuse_no_post_and_no_outcome(client: Client) -> None:
    keys = client.store.keys
    first = await client.post(1, functions=["echo"])
    await client.store.redis.set(keys.seq, "garbage")
    await client.store.redis.hset(keys.stats, "complete", "garbage")
    second = await client.post(2, functions=["echo"])
    claim = await client.store.claim("w", 60_000, 2, ["echo"])
    assert [job.id for job in claim.jobs] == [first, second]  # still in post order
    outcomes = [job.outcome(Event.COMPLETE, 0, ["result", b"\x01\x00"]) for job in claim.jobs]
    assert await client.store.finish("w", outcomes) == [True, True]
    assert await client.store.redis.hget(keys.stats, "complete") == b"2"  # started again
    assert (await client.get_job(second)).status == "complete"


async def test_a_lapsed_job_whose_data_cannot_be_read_is_buried_and_reported_alone(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    keys = client.store.keys
    bad_spec, bad_run, bad_lane, good = await client.post_many(range(4), functions=["echo"])
    assert len((await client.store.claim("gone", 1, 4, ["echo"])).jobs) == 4
    redis = client.store.redis
    await redis.hset(keys.spec, bad_spec, b"\xc1 not msgpack")
    await redis.hset(keys.running, bad_run, "garbage")
    await redis.hset(keys.job(bad_lane), "posted", "garbage")
    await anyio.sleep(0.05)  # every lease lapsed
    with caplog.at_level(logging.ERROR, logger="aqueue._services.reaper"):
        assert await reap_once(client.store) == (1, 3, 0)  # requeued, dead, promoted
    reported = {r.job_id for r in caplog.records}  # type: ignore[attr-defined]
    assert reported == {bad_spec, bad_run, bad_lane}
    for job_id, what in [(bad_spec, "spec"), (bad_run, "running entry"), (bad_lane, "lane")]:
        job = await client.get_job(job_id)
        assert job.status == "dead"
        assert what in (job.reason or "")
    assert (await client.get_job(good)).status == "queued"
    assert sorted(j.id for j in await client.dead_letters()) == sorted(
        [bad_spec, bad_run, bad_lane]
    )


async def test_a_due_job_whose_lane_cannot_be_read_is_buried_and_the_rest_promoted(
    client: Client,
) -> None:
    keys = client.store.keys
    bad, good = await client.post_many([1, 2], functions=["echo"], delay=0.01)
    await client.store.redis.hset(keys.job(bad), "posted", "garbage")
    await anyio.sleep(0.05)
    claim = await client.store.claim("w", 60_000, 10, ["echo"])  # promotes, then claims
    assert [job.id for job in claim.jobs] == [good]  # the bad one left for the reaper
    assert await reap_once(client.store) == (0, 1, 0)  # which buries it
    job = await client.get_job(bad)
    assert (job.status, job.reason) == (
        "dead",
        "its lane cannot be read from its record (posted)",
    )
    assert (await client.counts())["scheduled"] == 0


async def test_a_claimed_job_whose_spec_cannot_be_read_fails_alone_and_the_worker_goes_on(
    client: Client, redis_server: RedisServer, queue: str
) -> None:
    keys = client.store.keys
    ids = await client.post_many(range(6), functions=["echo"])
    specs = {ids[0]: b"\xc1", ids[1]: msgpack.packb([b"m", b"echo"])}  # garbage, short
    specs[ids[2]] = msgpack.packb([b"m", b"echo", "0", 1, b"", 60, b""])  # a field's type
    specs[ids[3]] = msgpack.packb([b"m", b"echo", 0, 1, b"", 60, b"", b"new"])  # a newer build's
    for job_id, spec in specs.items():
        await client.store.redis.hset(keys.spec, job_id, spec)
    async with running_worker(_echo(), queue=queue, redis_url=redis_server.url):
        with anyio.fail_after(10):
            assert [await client.block_until_result(i) for i in ids[4:]] == [4, 5]
            for job_id in specs:
                await until(partial(_finished, client, job_id))
    problems = ["is not msgpack", "it has 2 fields", "field timeout_ms is not int", "8 fields"]
    for job_id, problem in zip(specs, problems, strict=True):
        job = await client.get_job(job_id)
        assert (job.status, job.error_type) == ("failed", "aqueue.errors.MessageError")
        assert problem in (job.error_message or "")  # naming what is wrong
        assert problem in job.unreadable["spec"]  # and the record reads, saying why
    assert (await client.counts())["active"] == 0


async def test_a_record_with_fields_that_cannot_be_read_still_reads_and_says_which(
    client: Client,
) -> None:
    keys = client.store.keys
    job_id = await client.post({"a": 1}, functions=["echo"])
    garbage: dict[str, bytes] = {"prio": b"high", "ran": b"x", "posted": b"y"}
    garbage |= {"cb_attempts": b"z", "status": b"zombie"}
    garbage |= {"result": b"\x7fnot an envelope", "progress": b"\x01\xc1"}
    for name, value in garbage.items():
        await client.store.redis.hset(keys.job(job_id), name, value)
    await client.store.redis.hset(keys.spec, job_id, b"\x01\xc1")  # holds the message
    job = await client.get_job(job_id)
    assert job.id == job_id
    assert job.result == b"\x7fnot an envelope"  # its raw bytes, flagged
    assert job.progress is not None and job.progress.value == b"\x01\xc1"
    assert sorted(job.unreadable) == sorted([*garbage, "spec"])
    assert "not a status this build knows" in job.unreadable["status"]
    await client.store.redis.zadd(keys.dead, {job_id: 1})
    assert [j.id for j in await client.dead_letters()] == [job_id]  # listing reads it too


async def test_a_job_whose_message_and_result_cannot_be_decoded_reads_with_flags(
    client: Client, redis_server: RedisServer, queue: str
) -> None:
    keys, redis = client.store.keys, client.store.redis
    job_id = await client.post(1, functions=["echo"])
    spec = await redis.hget(keys.spec, job_id)
    assert isinstance(spec, bytes)
    _, shape = SpecShape.unpack(spec)
    await redis.hset(keys.spec, job_id, shape.pack(b"\x7fnot an envelope"))
    await redis.hset(keys.job(job_id), "status", "dead")
    await redis.hset(keys.job(job_id), "result", b"\x01\xc1")
    await redis.zadd(keys.dead, {job_id: 1})
    job = await client.get_job(job_id)
    assert (job.msg, job.result) == (b"\x7fnot an envelope", b"\x01\xc1")  # raw, and flagged:
    assert sorted(job.unreadable) == ["msg", "result"]
    assert "unknown envelope version" in job.unreadable["msg"]
    assert [j.id for j in await client.dead_letters()] == [job_id]
    await redis.hset(keys.job(job_id), "status", "complete")
    with pytest.raises(UnreadableData, match=f"result of job '{job_id}' cannot be decoded"):
        await client.get_result(job_id)
    config = HttpConfig(port=0, redis_url=redis_server.url, queue=queue)
    async with serving(config) as api:
        record = await api.json("GET", f"/jobs/{job_id}", 200)
        assert record["msg"] == {"base64": "f25vdCBhbiBlbnZlbG9wZQ=="}
        assert sorted(record["unreadable"]) == ["msg", "result"]
        problem = await api.json("GET", f"/jobs/{job_id}/result", 422)
        assert problem["error"] == "unreadable_data"
        await redis.hset(keys.job(job_id), "status", "dead")
        listing = await api.json("GET", f"/queues/{queue}/dead", 200)
        assert [(j["id"], sorted(j["unreadable"])) for j in listing["jobs"]] == [
            (job_id, ["msg", "result"])
        ]


async def test_worker_infos_that_cannot_be_read_are_passed_over(client: Client) -> None:
    keys, redis = client.store.keys, client.store.redis
    infos = {"garbage": b"\xc1", "wrong": msgpack.packb({"id": 5, "listeners": "echo"})}
    for worker_id, info in infos.items():
        await redis.zadd(keys.workers, {worker_id: 2**50})
        await redis.set(keys.worker(worker_id), info)
    job = await client.get_job(await client.post(1, functions=["echo"]))
    assert job.reason == "waiting for a worker with listeners: echo (no live worker has them)"
    status, _ = await QueueStatus.read(client.store, client.queue)
    assert status.workers == []


async def test_a_status_this_build_does_not_know_reads_as_dead_in_every_stream(
    client: Client, redis_server: RedisServer, queue: str
) -> None:
    job_id = await client.post(1, functions=["nobody"])
    await client.store.redis.hset(client.store.keys.job(job_id), "status", "paused-by-v9")
    job = await client.get_job(job_id)
    assert job.status == "dead" and "status" in job.unreadable
    with anyio.fail_after(10):
        events = [event async for event in client.watch(job_id)]  # it ends: nothing moves it
    assert [e.status for e in events] == ["dead"]
    async with serving(HttpConfig(port=0, redis_url=redis_server.url, queue=queue)) as api:
        with anyio.fail_after(10):
            _, body = await api.call("GET", f"/jobs/{job_id}/events", 200)
    assert b"event: outcome" in body and b'"status": "dead"' in body


async def test_a_lapsed_job_whose_record_was_deleted_while_it_ran_is_let_go_of(
    client: Client,
) -> None:
    keys = client.store.keys
    gone, kept = await client.post_many([1, 2], functions=["echo"])
    assert len((await client.store.claim("gone", 1, 2, ["echo"])).jobs) == 2
    await client.store.redis.delete(keys.job(gone))  # its spec stays behind
    await anyio.sleep(0.05)
    assert await client.store.reap(100) == (1, 0, 0, 0)  # the kept one requeued
    assert not await client.store.redis.hexists(keys.running, gone)
    assert (await client.get_job(kept)).status == "queued"


async def test_a_stored_bytes_header_that_claims_more_than_is_stored_is_refused_not_hung(
    client: Client, redis_server: RedisServer, queue: str
) -> None:
    """A result or data whose bin32 header said 4 GB answered 200 with that Content-Length,
    sent the 3 bytes there were, and left the client waiting for the rest."""
    keys, redis = client.store.keys, client.store.redis
    job_id = await client.post(1, functions=["echo"])
    await redis.hset(keys.job(job_id), mapping={"status": "complete"})
    await redis.hset(keys.job(job_id), "result", b"\x01\xc6\xff\xff\xff\xffabc")
    await redis.set(keys.data("lie"), b"\x01\xc4\x05ab")
    config = HttpConfig(port=0, redis_url=redis_server.url, queue=queue)
    async with serving(config) as api:
        with anyio.fail_after(10):
            for path in (f"/jobs/{job_id}/result", "/data/lie"):
                problem = await api.json("GET", path, 422)
                assert problem["error"] == "unreadable_data"
            # as a file it is no bytes this build can vouch for: not served as one
            await api.json("GET", f"/jobs/{job_id}/result.png", 406)


async def test_a_record_of_the_wrong_type_reads_as_no_record_and_the_dead_list_goes_on(
    client: Client,
) -> None:
    """A job key planted as a list made get_job, GET /jobs/{id} and the whole dead-letter
    listing fail as 'Redis refused the command' (a 503)."""
    keys, redis = client.store.keys, client.store.redis
    planted, kept = await client.post(1, functions=["echo"]), await client.post(2)
    await redis.delete(keys.job(planted))
    await redis.rpush(keys.job(planted), "not a record")
    await redis.hset(keys.job(kept), "status", "dead")
    await redis.zadd(keys.dead, {planted: 1, kept: 2})
    with pytest.raises(JobNotFound):
        await client.get_job(planted)
    assert [job.id for job in await client.dead_letters()] == [kept]


async def test_one_queues_keys_of_the_wrong_type_leave_every_queue_listed(
    client: Client, redis_server: RedisServer, queue: str
) -> None:
    """GET /queues and `aqueue status` read every queue: a planted `workers` string, or a
    queued job's record planted as a list, made them 503 for every queue of the server."""
    keys, redis = client.store.keys, client.store.redis
    planted = await client.post(1, functions=["echo"])
    await redis.delete(keys.job(planted))
    await redis.rpush(keys.job(planted), "not a record")
    await redis.set(keys.workers, "not a zset")
    config = HttpConfig(port=0, redis_url=redis_server.url, queue=queue)
    async with serving(config) as api:
        listed = await api.json("GET", "/queues", 200)
        assert queue in [q["queue"] for q in listed["queues"]]
        mine = await api.json("GET", f"/queues/{queue}", 200)
        assert (mine["queued"], mine["workers"]) == (1, [])


async def _finished(client: Client, job_id: str) -> bool:
    return (await client.get_job(job_id)).is_finished

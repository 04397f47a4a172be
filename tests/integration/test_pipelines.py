"""Pipelines: a listener's return values go to its output queues, once per job, with their
lineage (PiCloud's output queues: numbers -> double -> doubled). On every topology: on a
cluster the stages' queues are on different masters, and outputs cross them through the
forward outbox, never inside a script."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from aqueue import Client, Context, JobFailed, JobStatus, ListenerError, Listeners
from aqueue._codec import encode
from aqueue._http.base import HttpConfig
from aqueue._redis.calls import pack_outputs
from aqueue._redis.records import output_id
from aqueue._services.forwarder import Forwarder
from aqueue.config import ClientConfig
from aqueue.testing import running_worker, until

from .test_cli import aqueue
from .test_http import serving

pytestmark = pytest.mark.every_topology


def _pipeline(queue: str) -> tuple[Listeners, dict[str, str]]:
    """numbers -> double -> doubled -> split (iter_output) -> words; and a sink per end."""
    q = {stage: f"{queue}-{stage}" for stage in ("numbers", "doubled", "words", "nothing")}
    listeners = Listeners()

    @listeners.listener(outputs=[q["doubled"]])
    async def double(msg: int, ctx: Context) -> int | None:
        return None if msg < 0 else msg * 2  # None: no output

    @listeners.listener(outputs=[q["words"]], iter_output=True)
    async def split(msg: str, ctx: Context) -> list[str | None]:
        return [*msg.split(), None]  # a None element is a message of its own

    @listeners.listener(outputs=[q["nothing"]])
    async def unencodable(msg: Any, ctx: Context) -> object:
        return object()

    return listeners, q


async def _count(client: Client, queue: str) -> int:
    """Jobs ever posted to `queue`."""
    return int((await client.store.view(queue).snapshot())["totals"].get("posted", 0))


async def _posted(client: Client, queue: str, least: int) -> None:
    """Until `queue` has had `least` jobs posted."""

    async def enough() -> bool:
        return await _count(client, queue) >= least

    await until(enough, 60, what=f"{least} jobs posted to {queue}")


async def test_a_thousand_numbers_through_double_give_a_thousand_doubled_once_each(
    redis_url: str, queue: str
) -> None:
    listeners, q = _pipeline(queue)
    async with (
        Client(q["numbers"], redis_url=redis_url) as numbers,
        running_worker(listeners, queue=q["numbers"], redis_url=redis_url),
    ):
        ids = await numbers.post_many(range(1000), functions=["double"])
        await _posted(numbers, q["doubled"], 1000)
        for job_id in ids:
            assert (await numbers.get_job(job_id)).status is JobStatus.COMPLETE
        first = await numbers.get_job(ids[0])  # the jobs its outputs became, once forwarded
        assert first.outputs == ((q["doubled"], output_id(q["numbers"], ids[0], q["doubled"], 0)),)
        await anyio.sleep(0.3)  # (nothing more is to come: the count below would show it)
        assert await _count(numbers, q["doubled"]) == 1000
    async with Client(q["doubled"], redis_url=redis_url) as doubled:
        for n, job_id in enumerate(ids[:50]):
            out = await doubled.get_job(output_id(q["numbers"], job_id, q["doubled"], 0))
            assert out.msg == 2 * n and out.status is JobStatus.QUEUED
            assert (out.root, out.parent, out.stage) == (job_id, job_id, q["numbers"])


async def test_none_posts_nothing_and_iter_output_posts_each_element(
    redis_url: str, queue: str
) -> None:
    listeners, q = _pipeline(queue)
    async with (
        Client(q["numbers"], redis_url=redis_url) as client,
        running_worker(listeners, queue=q["numbers"], redis_url=redis_url),
    ):
        nothing = await client.post(-1, functions=["double"])
        sentence = await client.post("to be or not", functions=["split"])
        for job_id in (nothing, sentence):
            await client.block_until_result(job_id, timeout=20)
        await _posted(client, q["words"], 5)
    async with Client(q["words"], redis_url=redis_url) as words:
        posted = [
            (await words.get_job(output_id(q["numbers"], sentence, q["words"], i))).msg
            for i in range(5)
        ]
        assert posted == ["to", "be", "or", "not", None]
        assert await _count(words, q["doubled"]) == 0


async def test_lineage_runs_from_the_first_job_through_every_stage(
    redis_url: str, queue: str
) -> None:
    q = {n: f"{queue}-s{n}" for n in range(3)}
    listeners = Listeners()

    @listeners.listener(outputs=[q[1]])
    async def first(msg: int, ctx: Context) -> int:
        return msg + 1

    @listeners.listener(outputs=[q[2]])
    async def second(msg: int, ctx: Context) -> int:
        return msg * 10

    async with (
        Client(q[0], redis_url=redis_url) as client,
        running_worker(listeners, queue=q[0], redis_url=redis_url),
        running_worker(listeners, queue=q[1], redis_url=redis_url),
    ):
        root = await client.post(4, functions=["first"])
        middle = output_id(q[0], root, q[1], 0)
        last = output_id(q[1], middle, q[2], 0)
        await _posted(client, q[2], 1)
    async with Client(q[2], redis_url=redis_url) as stage2:
        job = await stage2.get_job(last)
        assert job.msg == 50
        assert (job.root, job.parent, job.stage) == (root, middle, q[1])


async def test_an_output_that_cannot_be_encoded_fails_its_job_saying_why_not_the_forwarder(
    redis_url: str, queue: str
) -> None:
    listeners, q = _pipeline(queue)
    async with (
        Client(q["numbers"], redis_url=redis_url) as client,
        running_worker(listeners, queue=q["numbers"], redis_url=redis_url),
    ):
        bad = await client.post(1, functions=["unencodable"])
        with pytest.raises(Exception, match="the output is not encodable with msgpack"):
            await client.block_until_result(bad, timeout=20)
        assert (await client.get_job(bad)).status is JobStatus.FAILED
        good = await client.post(3, functions=["double"])  # the forwarder goes on
        await client.block_until_result(good, timeout=20)
        await _posted(client, q["doubled"], 1)
        assert await _count(client, q["nothing"]) == 0


async def test_outputs_taken_again_after_a_forwarder_stopped_are_not_posted_twice(
    redis_url: str, queue: str
) -> None:
    listeners, q = _pipeline(queue)
    async with Client(q["numbers"], redis_url=redis_url) as client:
        ids = await client.post_many(range(10), functions=["double"])
        async with running_worker(listeners, queue=q["numbers"], redis_url=redis_url):
            await _posted(client, q["doubled"], 10)
        # What a forwarder killed after posting, before letting go, leaves: each job's
        # outputs still in the outbox, under a lease that has lapsed
        keys = client.store.keys
        async with client.store.redis.pipeline(transaction=False) as pipe:
            for n, job_id in enumerate(ids):
                pipe.hset(keys.outputs, job_id, pack_outputs([(q["doubled"], [encode(2 * n)])]))
                pipe.zadd(keys.forwarding, {job_id: 0})
            await pipe.execute()
        successor = Forwarder(client.store, ClientConfig(queue=q["numbers"], redis_url=redis_url))
        assert await successor.forward_once() is None  # took all ten again, posted them again
        assert await _count(client, q["doubled"]) == 10  # and none is there twice
        assert (await client.store.claim_forwards(1000, 64))[1] == []  # all let go of


async def test_a_failed_job_is_routed_by_its_error_s_closest_class_after_its_retries(
    redis_url: str, queue: str
) -> None:
    """PiCloud's scraper: retry_on network errors up to max_retries, then on_error routes."""
    bad, errors = f"{queue}-bad-urls", f"{queue}-errors"
    seen: list[tuple[str, int]] = []
    listeners = Listeners()

    @listeners.listener(
        retry_on=[ConnectionError],
        max_retries=2,
        retry_delay=0,
        on_error={ValueError: bad, Exception: errors},
    )
    async def scrape(url: str, ctx: Context) -> str:
        seen.append((url, ctx.retries))
        if not url.startswith("http"):
            raise ValueError(f"not a URL: {url}")
        raise ConnectionError(f"{url} unreachable")

    async with (
        Client(queue, redis_url=redis_url) as client,
        running_worker(listeners, queue=queue, redis_url=redis_url),
    ):
        typo = await client.post("htp:/x")
        down = await client.post("http://down.example")
        for job_id in (typo, down):
            with pytest.raises(JobFailed):
                await client.block_until_result(job_id, timeout=20)
        await _posted(client, bad, 1)
        await _posted(client, errors, 1)
    assert seen.count(("htp:/x", 0)) == 1  # a ValueError earns no retry
    assert [r for url, r in seen if url == "http://down.example"] == [0, 1, 2]  # ctx.retries
    async with Client(bad, redis_url=redis_url) as routed:
        [message] = [(await routed.get_job(output_id(queue, typo, bad, 0, "1"))).msg]
    assert message["source_message"] == "htp:/x" and message["exc_type"] == "ValueError"
    assert message["attempt"] == 1 and message["queue"] == queue
    assert "ValueError: not a URL: htp:/x" in message["traceback"]
    async with Client(errors, redis_url=redis_url) as routed:
        late = await routed.get_job(output_id(queue, down, errors, 0, "3"))
    assert late.msg["exc_type"] == "ConnectionError" and late.msg["attempt"] == 3
    assert (late.root, late.parent, late.stage) == (down, down, queue)
    assert (await client_status(redis_url, queue)) == "failed"


async def client_status(redis_url: str, queue: str) -> str:
    """The status every job of `queue` ended in (one status, or a list of them)."""
    async with Client(queue, redis_url=redis_url) as client:
        snapshot = await client.store.snapshot()
    totals = {k: v for k, v in snapshot["totals"].items() if k in ("complete", "failed", "dead")}
    return ",".join(sorted(totals))


def test_an_output_queue_that_is_no_queue_name_is_refused_at_registration() -> None:
    listeners = Listeners()
    with pytest.raises(ListenerError, match="output of listener 'f': queue name 'no way'"):
        listeners.add(lambda msg, ctx: msg, name="f", outputs=["no way"])
    with pytest.raises(ListenerError, match="must be a list of queue names"):
        listeners.add(lambda msg, ctx: msg, name="g", outputs="doubled")
    with pytest.raises(ListenerError, match="on_error of listener 'h': queue name"):
        listeners.add(lambda msg, ctx: msg, name="h", on_error={ValueError: "a b"})
    with pytest.raises(ListenerError, match="maps 'oops', which is no exception type"):
        listeners.add(lambda msg, ctx: msg, name="i", on_error={"oops": "q"})  # type: ignore[dict-item]
    with pytest.raises(ListenerError, match="max_retries of 'j' must be a whole number"):
        listeners.add(lambda msg, ctx: msg, name="j", max_retries=-1)
    with pytest.raises(ListenerError, match="retry_delay of 'k' must be seconds"):
        listeners.add(lambda msg, ctx: msg, name="k", retry_delay=float("nan"))
    with pytest.raises(ListenerError, match="iter_output of 'l' must be True or False"):
        listeners.add(lambda msg, ctx: msg, name="l", iter_output="yes")  # type: ignore[arg-type]
    with pytest.raises(ListenerError, match="on_error of 'm' must map exception types"):
        listeners.add(lambda msg, ctx: msg, name="m", on_error=[ValueError])  # type: ignore[arg-type]


async def test_trace_names_the_stage_where_a_line_stopped_by_cli_http_and_api(
    redis_url: str, queue: str
) -> None:
    """ "Where did it stop?": three stages, and no worker serves the middle one."""
    q = [f"{queue}-in", f"{queue}-middle", f"{queue}-out", f"{queue}-bad"]
    listeners = Listeners()

    @listeners.listener(outputs=[q[1]], iter_output=True, on_error={ValueError: q[3]}, retry_on=())
    async def fan_out(msg: int, ctx: Context) -> list[int]:
        if msg < 0:
            raise ValueError(f"negative: {msg}")
        return [msg, msg + 1, msg + 2]

    async with (
        Client(q[0], redis_url=redis_url) as client,
        running_worker(listeners, queue=q[0], redis_url=redis_url),
    ):
        root = await client.post(1)
        bad = await client.post(-1)
        await _posted(client, q[1], 3)
        await _posted(client, q[3], 1)
        found = await client.trace(root)
        assert [s.queue for s in found.stages] == [q[0], q[1]]
        first, middle = found.stages
        assert first.counts == {"complete": 1} and middle.counts == {"queued": 3}
        assert middle.attention == f"3 job(s) waiting and no live worker serves {q[1]}"
        assert found.stopped_at == [q[1]] and found.jobs == 4 and not found.truncated
        failed = await client.trace(bad)
        assert [(s.queue, s.counts, s.routed) for s in failed.stages] == [
            (q[0], {"failed": 1}, 0), (q[3], {"queued": 1}, 1),
        ]  # fmt: skip
        assert failed.stages[0].stopped == [{"id": bad, "status": "failed", "why": "ValueError"}]
        code, out, _ = await aqueue("trace", root, "--redis-url", redis_url, "--queue", q[0])
        assert code == 2 and f"! {q[1]}: 3 job(s) waiting and no live worker" in out
        code, out, _ = await aqueue(
            "trace", root, "--json", "--redis-url", redis_url, "--queue", q[0]
        )
        assert json.loads(out)["stages"][1]["counts"] == {"queued": 3}
        config = HttpConfig(port=0, redis_url=redis_url, queue=q[0])
        async with serving(config) as api:
            answer = await api.json("GET", f"/jobs/{root}/trace", 200)
        assert answer["stopped_at"] == [q[1]] and answer["jobs"] == 4


async def test_status_shows_the_pipeline_the_workers_declare_and_a_cycle_in_it(
    redis_url: str, queue: str
) -> None:
    ping, pong = f"{queue}-ping", f"{queue}-pong"
    there, back = Listeners(), Listeners()

    @there.listener(outputs=[pong])
    async def serve(msg: int, ctx: Context) -> None:
        return None

    @back.listener(outputs=[ping], on_error={Exception: f"{queue}-errors"})
    async def volley(msg: int, ctx: Context) -> None:
        return None

    async with (
        running_worker(there, queue=ping, redis_url=redis_url),
        running_worker(back, queue=pong, redis_url=redis_url),
    ):
        where = ["--redis-url", redis_url, "--queue", ping, "--queue", pong]
        _, out, _ = await aqueue("status", *where)
        assert f"pipeline: {ping} (from {pong}) -> {pong}" in out
        assert f"pipeline: {pong} (from {ping}) -> {queue}-errors, {ping}" in out
        assert f"pipeline: a cycle {ping} -> {pong} -> {ping}" in out
        _, out, _ = await aqueue("status", "--json", *where)
        assert [q["outputs"] for q in json.loads(out)["queues"]] == [
            [pong],
            sorted([ping, f"{queue}-errors"]),
        ]

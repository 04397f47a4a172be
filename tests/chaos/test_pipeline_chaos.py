"""A 3-stage pipeline under load (numbers -> +1 -> x10 -> kept) while its workers are SIGKILLed
over and over, one stage after another, between finishes and their forwarding: every output
exists exactly once downstream and nothing is lost. On one node, and on a cluster with each
stage's queue on a master of its own (outputs cross slots through the forward outbox: no
CROSSSLOT, no script touching two queues)."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import anyio
import pytest
from redis.crc import key_slot

from aqueue import Client, JobStatus
from aqueue._redis.keys import Keys
from aqueue._redis.records import output_id
from aqueue.testing import until

from ..processes import aqueue_process
from .conftest import FAST, WorkerProcess

pytestmark = pytest.mark.chaos

POSTS = 200
KILLS = 9  # three of each stage's workers
STAGES = ("first", "second", "third")


def _on_three_masters(queue: str) -> list[str]:
    """Three queue names whose slots are each on another master of the suite's cluster (a
    third of the slots each, in order): one name per stage."""
    names: list[str | None] = [None, None, None]
    for n in itertools.count():
        name = f"{queue}-{n}"
        master = min(key_slot(Keys(name).stats.encode()) // (16384 // 3), 2)  # (as Cluster)
        if names[master] is None:
            names[master] = name
        if all(names):
            return [str(name) for name in names]
    raise AssertionError("unreachable")


@contextlib.asynccontextmanager
async def _stage(
    stage: str, queue: str, url: str, log: Path, env: dict[str, str]
) -> AsyncIterator[WorkerProcess]:
    args = ["worker", f"tests.chaos.pipeline_listeners:{stage}", "--queue", queue]
    args += ["--redis-url", url, *FAST, "--concurrency", "2"]  # a few seconds a stage
    async with aqueue_process(args, log=log, env=env) as process:
        worker = WorkerProcess(process, log)
        await worker.wait_for_log("serving queue")
        yield worker


async def _running(client: Client, queue: str) -> bool:
    return bool((await client.store.view(queue).snapshot())["active"])


async def _settled(client: Client, queue: str, expected: int) -> bool:
    """`queue` has had `expected` jobs posted, and runs none any more."""
    snapshot = await client.store.view(queue).snapshot()
    return bool(
        snapshot["totals"].get("posted", 0) >= expected
        and snapshot["queued"] == snapshot["active"] == snapshot["scheduled"] == 0
    )


@pytest.mark.parametrize("redis_url", ["standalone", "cluster"], indirect=True)
async def test_sigkills_between_finishes_and_forwarding_leave_every_output_once(
    redis_url: str, queue: str, tmp_path: Path
) -> None:
    names = _on_three_masters(queue)
    env = {"AQUEUE_TEST_PIPELINE": ",".join(names)}
    logs = (tmp_path / f"worker-{n}.log" for n in itertools.count())
    ids: list[str] = []

    async def post_steadily() -> None:  # work all along the kills, at every stage
        for start in range(0, POSTS, 10):
            ids.extend(await client.post_many(range(start, start + 10)))
            await anyio.sleep(0.15)

    async with Client(names[0], redis_url=redis_url) as client:
        async with contextlib.AsyncExitStack() as everything, anyio.create_task_group() as tg:
            stacks = []
            for stage, name in zip(STAGES, names, strict=True):
                stack = contextlib.AsyncExitStack()
                await stack.enter_async_context(_stage(stage, name, redis_url, next(logs), env))
                stacks.append(stack)
            everything.push_async_callback(lambda: _close(stacks))
            tg.start_soon(post_steadily)
            hits = 0  # kills of a worker that was running a job
            for kill in range(KILLS):
                k = kill % 3
                with anyio.move_on_after(5):  # until the stage runs something, to kill it then
                    await until(partial(_running, client, names[k]), 6, interval=0.02)
                hits += await _running(client, names[k])
                worker = stacks[k]
                await worker.aclose()  # SIGKILL (aqueue_process kills what it started)
                stacks[k] = contextlib.AsyncExitStack()
                await stacks[k].enter_async_context(
                    _stage(STAGES[k], names[k], redis_url, next(logs), env)
                )
            for name in names:
                await until(partial(_settled, client, name, POSTS), 90, what=name)
        counts = [
            (await client.store.view(name).snapshot())["totals"].get("posted", 0) for name in names
        ]
        print(f"\nposted per stage {counts} with {KILLS} workers SIGKILLed, {hits} mid-job")
        assert hits > 0
        assert counts == [POSTS] * 3  # none lost, none posted twice
        again = 0  # jobs a kill cut short, run again: the kills did hit work in flight
        async with Client(names[1], redis_url=redis_url) as middle:
            async with Client(names[2], redis_url=redis_url) as last:
                for n, job_id in enumerate(ids):
                    second = output_id(names[0], job_id, names[1], 0)
                    third = await last.get_job(output_id(names[1], second, names[2], 0))
                    assert third.status is JobStatus.COMPLETE and third.msg == (n + 1) * 10
                    assert (third.root, third.parent, third.stage) == (job_id, second, names[1])
                    runs = [await client.get_job(job_id), await middle.get_job(second), third]
                    again += sum(job.attempt > 1 for job in runs)
        retakes = [
            (await client.store.view(name).snapshot())["totals"].get("forward_retakes", 0)
            for name in names[:2]
        ]
        print(f"{again} job(s) run again after a kill; forwardings taken over: {retakes}")
        assert again > 0  # the kills hit work in flight, not idle workers


async def _close(stacks: list[contextlib.AsyncExitStack]) -> None:
    for stack in stacks:
        await stack.aclose()

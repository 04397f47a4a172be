"""A daemon killed in the middle of delivering a callback: after a restart the callback is
delivered — not lost, without spending one of the job's attempts (our crash is not the
receiver's failure), and once recorded as delivered never repeated."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial

import anyio
import pytest
from aiohttp import web

from aqueue import Client
from aqueue._redis.server import free_port
from aqueue.testing import RedisServer, until

from ..integration.test_callbacks import nothing_left_to_deliver
from .conftest import StartWorker

pytestmark = pytest.mark.chaos

LOOPBACK = ["--callback-allow-networks", "127.0.0.0/8"]  # where the receivers listen


@asynccontextmanager
async def receiving(handle: Callable[[web.Request], Awaitable[web.Response]]) -> AsyncIterator[str]:
    """A callback receiver on loopback answering GET /hook with `handle`; its URL."""
    port = free_port()
    app = web.Application()
    app.router.add_get("/hook", handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        await runner.cleanup()


@pytest.fixture
async def hanging_once() -> AsyncIterator[tuple[str, list[str], anyio.Event]]:
    """A receiver whose first request hangs (long enough to kill the daemon); later ones 200."""
    calls: list[str] = []
    first = anyio.Event()

    async def handle(request: web.Request) -> web.Response:
        calls.append(request.headers.get("Idempotency-Key", ""))
        if len(calls) == 1:
            first.set()
            await anyio.sleep(60)
        return web.Response(text="ok")

    async with receiving(handle) as url:
        yield url, calls, first


async def test_a_dispatcher_killed_mid_delivery_delivers_after_restart_spending_no_attempt(
    redis_server: RedisServer,
    queue: str,
    start_worker: StartWorker,
    hanging_once: tuple[str, list[str], anyio.Event],
) -> None:
    url, calls, first = hanging_once
    # One attempt: a crash of ours that spent it would lose the callback. The lease leaves a
    # loaded machine room to record the delivery (a lapse would be a repeat, as it should).
    timing = ["--callback-timeout", "0.8", "--callback-lease", "3", "--callback-backoff", "0.05",
              "--callback-attempts", "1", *LOOPBACK]  # fmt: skip
    async with Client(queue, redis_url=redis_server.url) as client:
        async with start_worker(queue, redis_server.url, *timing) as doomed:
            job_id = await client.post({"seconds": 0}, functions=["slow"], callback=url)
            with anyio.fail_after(20):
                await first.wait()  # the delivery is in flight...
            doomed.signal(signal.SIGKILL)  # ...when its daemon dies
            await doomed.wait()
        assert (await client.get_job(job_id)).callback_state == "delivering"
        async with start_worker(queue, redis_server.url, *timing):
            await until(partial(_delivered, client, job_id), 20, interval=0.05)
            await nothing_left_to_deliver(client, job_id)  # no repeat can follow
        job = await client.get_job(job_id)
    assert len(calls) == 2  # the interrupted one and the delivery; nothing after it
    assert calls[0] == calls[1] == f"{job_id}.1.complete"  # same key: the receiver dedupes
    assert [line.split(" ", 1)[1] for line in job.callback_log] == [
        "dispatcher stopped mid-delivery: tried again, not counted as an attempt",
        "HTTP 200",
    ]
    assert job.callback_attempts == 1  # the receiver's answer, and only that


async def test_a_redis_outage_mid_delivery_is_ridden_out_and_the_callback_recorded_once(
    private_redis: RedisServer, queue: str, start_worker: StartWorker
) -> None:
    # The receiver is called while Redis is up and answers while it is down: the daemon
    # must wait for Redis to record the delivery, not die (and not call twice after).
    calls: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        calls.append(request.headers.get("Idempotency-Key", ""))
        if len(calls) == 1:
            await anyio.to_thread.run_sync(private_redis.kill)  # a crash: SIGKILL
        return web.Response(text="ok")

    timing = ["--callback-timeout", "2", "--callback-lease", "30", *LOOPBACK]
    async with receiving(handle) as url, start_worker(queue, private_redis.url, *timing) as worker:
        async with Client(queue, redis_url=private_redis.url) as client:
            job_id = await client.post({"seconds": 0}, functions=["slow"], callback=url)
        await until(lambda: calls, 20)
        await anyio.sleep(1.0)  # the outage
        await anyio.to_thread.run_sync(private_redis.start)
        async with Client(queue, redis_url=private_redis.url) as client:
            await until(partial(_delivered, client, job_id), 20, interval=0.05)
            job = await client.get_job(job_id)
        assert worker.process.returncode is None  # rode it out
        worker.signal(signal.SIGTERM)
        assert await worker.wait() == 0
    assert calls == [f"{job_id}.1.complete"]
    assert [line.split(" ", 1)[1] for line in job.callback_log] == ["HTTP 200"]


async def _delivered(client: Client, job_id: str) -> bool:
    return (await client.get_job(job_id)).callback_state == "delivered"

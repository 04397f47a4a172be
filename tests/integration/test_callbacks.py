"""Callbacks: a real aiohttp receiver on loopback is called once per outcome, retried a
bounded number of times, and never holds up the worker's jobs."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

import anyio
import pytest
from aiohttp import web

from aqueue import Client, Context, Job, JobFailed, JobNotFound, JobStatus, Listeners, Output
from aqueue._redis.server import free_port
from aqueue._services.callbacks import CRASH_RETRIES, signature
from aqueue.testing import FAST_CALLBACKS, run_until_idle, running_worker, until

pytestmark = pytest.mark.every_topology


@dataclass
class Received:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A callback receiver: /ok answers 200, /flaky 500 twice then 200, /fail always 500,
    /hang never answers in time, /meanwhile does `before_answer` first, then answers 200."""

    base: str
    requests: list[Received] = field(default_factory=list)
    arrived: anyio.Event = field(default_factory=anyio.Event)
    before_answer: Callable[[], Awaitable[object]] | None = None  # run by /meanwhile

    def to(self, path: str) -> list[Received]:
        return [r for r in self.requests if urlsplit(r.url).path.startswith(path)]

    async def until(self, path: str, count: int, timeout: float = 15) -> list[Received]:
        with anyio.fail_after(timeout):
            while len(self.to(path)) < count:
                self.arrived = anyio.Event()
                await self.arrived.wait()
        return self.to(path)


async def settled(client: Client, job_id: str, state: str, timeout: float = 20) -> Job:
    """The job, once its callback has reached `state` ("delivered", "failed")."""

    async def reached() -> Job | None:
        job = await client.get_job(job_id)
        return job if job.callback_state == state else None

    job = await until(reached, timeout, interval=0.05, what=f"callback {state} of job {job_id}")
    assert job is not None
    return job


async def nothing_left_to_deliver(client: Client, job_id: str) -> None:
    """No dispatcher holds the job's callback, nor will take it again: it is in no outbox,
    lease or retry (the sources of claim_callbacks.lua), so no later request can come."""
    keys, redis = client.store.keys, client.store.redis
    assert job_id.encode() not in await redis.lrange(keys.outbox, 0, -1)
    assert await redis.zscore(keys.callbacks_active, job_id) is None
    assert await redis.zscore(keys.callbacks_retry, job_id) is None


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    port = free_port()
    box = Receiver(f"http://127.0.0.1:{port}")
    flaky_calls = 0

    async def handle(request: web.Request) -> web.Response:
        nonlocal flaky_calls
        body = await request.read()
        box.requests.append(Received(request.method, str(request.url), dict(request.headers), body))
        box.arrived.set()
        if request.path == "/flaky":
            flaky_calls += 1
            return web.Response(status=500 if flaky_calls <= 2 else 200)
        if request.path == "/fail":
            return web.Response(status=500)
        if request.path == "/hang":
            await anyio.sleep(30)
        if request.path == "/meanwhile" and box.before_answer is not None:
            await box.before_answer()
        return web.Response(text="thanks")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield box
    await runner.cleanup()


def _listeners() -> Listeners:
    listeners = Listeners()

    @listeners.listener
    async def label(msg: str, ctx: Context) -> Output:
        return Output(result=msg.encode(), short=f"{msg} & co")

    @listeners.listener(retry_on=())
    async def refuse(msg: str, ctx: Context) -> None:
        raise ValueError("no")

    @listeners.listener
    async def quick(msg: int, ctx: Context) -> int:
        return msg

    return listeners


# The receiver is on loopback, which callbacks may not reach unless the operator allows it.
LOOPBACK = replace(FAST_CALLBACKS, allow_networks=("127.0.0.0/8",))
SECRET = "shh"
SIGNED = replace(LOOPBACK, secret=SECRET)


async def test_success_is_called_back_once_keeping_the_url_s_own_query(
    client: Client, redis_url: str, queue: str, receiver: Receiver
) -> None:
    async with running_worker(_listeners(), queue=queue, redis_url=redis_url, callbacks=SIGNED):
        job_id = await client.post(
            "widget", functions=["label"], callback=f"{receiver.base}/ok?user=7&x=a%20b"
        )
        [call] = await receiver.until("/ok", 1)
        await settled(client, job_id, "delivered")
    await nothing_left_to_deliver(client, job_id)  # and the worker has stopped: no duplicate
    assert len(receiver.to("/ok")) == 1
    assert call.method == "GET"
    assert call.url == (
        f"{receiver.base}/ok?user=7&x=a%20b&success=1&job_id={job_id}&short_result=widget+%26+co"
    )
    assert call.headers["Idempotency-Key"] == f"{job_id}.1.complete"
    timestamp = call.headers["X-Aqueue-Timestamp"]
    expected = signature(SECRET, timestamp, "GET", call.url, b"")
    assert call.headers["X-Aqueue-Signature"] == expected
    job = await client.get_job(job_id)
    assert job.status is JobStatus.COMPLETE
    assert (job.callback_state, job.callback_attempts) == ("delivered", 1)
    assert job.callback_log[0].endswith("HTTP 200")


async def test_a_failure_is_called_back_with_success_0(
    client: Client, redis_url: str, queue: str, receiver: Receiver
) -> None:
    async with running_worker(_listeners(), queue=queue, redis_url=redis_url, callbacks=LOOPBACK):
        job_id = await client.post("x", functions=["refuse"], callback=f"{receiver.base}/ok")
        with pytest.raises(JobFailed):
            await client.block_until_result(job_id, timeout=10)
        [call] = await receiver.until("/ok", 1)
    assert f"success=0&job_id={job_id}&short_result=" in call.url


async def test_post_callbacks_carry_the_json_record(
    client: Client, redis_url: str, queue: str, receiver: Receiver
) -> None:
    async with running_worker(_listeners(), queue=queue, redis_url=redis_url, callbacks=SIGNED):
        job_id = await client.post(
            "img", functions=["label"], callback=f"{receiver.base}/ok", callback_method="POST"
        )
        [call] = await receiver.until("/ok", 1)
    record = json.loads(call.body)
    assert record["id"] == job_id and record["success"] is True and record["status"] == "complete"
    assert record["short_result"] == "img & co" and record["result"] == {"base64": "aW1n"}
    assert call.headers["Content-Type"] == "application/json"
    expected = signature(SECRET, call.headers["X-Aqueue-Timestamp"], "POST", call.url, call.body)
    assert call.headers["X-Aqueue-Signature"] == expected


async def test_a_receiver_that_fails_twice_then_succeeds_gets_exactly_three_requests(
    client: Client, redis_url: str, queue: str, receiver: Receiver
) -> None:
    async with running_worker(_listeners(), queue=queue, redis_url=redis_url, callbacks=LOOPBACK):
        job_id = await client.post("x", functions=["quick"], callback=f"{receiver.base}/flaky")
        await receiver.until("/flaky", 3)
        await settled(client, job_id, "delivered")
    await nothing_left_to_deliver(client, job_id)
    assert len(receiver.to("/flaky")) == 3
    job = await client.get_job(job_id)
    assert (job.callback_state, job.callback_attempts) == ("delivered", 3)
    assert [line.split(" ", 1)[1] for line in job.callback_log] == [
        "HTTP 500",
        "HTTP 500",
        "HTTP 200",
    ]


@pytest.mark.parametrize("target", ["/fail", "/hang", "refused"])
async def test_a_receiver_that_never_succeeds_gets_the_configured_attempts_and_work_goes_on(
    client: Client, redis_url: str, queue: str, receiver: Receiver, target: str
) -> None:
    url = (
        f"http://127.0.0.1:{free_port()}/nobody" if target == "refused" else receiver.base + target
    )
    async with running_worker(
        _listeners(), queue=queue, redis_url=redis_url, callbacks=LOOPBACK, concurrency=1
    ):
        job_id = await client.post(1, functions=["quick"], callback=url)
        assert await client.block_until_result(job_id, timeout=10) == 1
        # while its callback is being tried and retried, the worker's only slot is free
        with anyio.fail_after(5):
            assert await client.block_until_result(await client.post(2, functions=["quick"])) == 2
        await settled(client, job_id, "failed")
    job = await client.get_job(job_id)
    assert job.status is JobStatus.COMPLETE
    assert job.callback_attempts == 3 and len(job.callback_log) == 3
    if target != "refused":
        assert len(receiver.to(target)) == 3
    reason = {"/fail": "HTTP 500", "/hang": "no answer within 0.5 s", "refused": "ClientConnector"}
    assert all(reason[target] in line for line in job.callback_log)


async def test_callbacks_to_hosts_outside_the_allowlist_are_never_made(
    client: Client, redis_url: str, queue: str, receiver: Receiver
) -> None:
    only_elsewhere = replace(LOOPBACK, allowed_hosts=("hooks.example.test",))
    async with running_worker(
        _listeners(), queue=queue, redis_url=redis_url, callbacks=only_elsewhere
    ):
        job_id = await client.post(1, functions=["quick"], callback=f"{receiver.base}/ok")
        await settled(client, job_id, "failed")
    assert receiver.requests == []
    assert "not in the callback allowlist" in (await client.get_job(job_id)).callback_log[0]


async def test_a_job_deleted_while_its_callback_is_delivered_is_let_go_of(
    client: Client, redis_url: str, queue: str, receiver: Receiver
) -> None:
    # The record went (a purge here; its ttl running out does the same) while its callback
    # was on its way. The delivery's bookkeeping used to outlive it: once its lease lapsed,
    # a claim wrote callback fields into a record with no status, which every worker of the
    # queue then crashed on.
    listeners = _listeners()

    @listeners.listener
    async def crash(msg: int, ctx: Context) -> None:
        raise ValueError("dead on arrival")

    receiver.before_answer = client.purge_dead
    async with running_worker(listeners, queue=queue, redis_url=redis_url, callbacks=LOOPBACK):
        job_id = await client.post(
            1, functions=["crash"], retry=0, callback=f"{receiver.base}/meanwhile"
        )
        await receiver.until("/meanwhile", 1)
        await anyio.sleep(FAST_CALLBACKS.lease + 0.5)  # past the delivery's lease
        with pytest.raises(JobNotFound):
            await client.get_job(job_id)
        # the worker lives on
        assert await client.block_until_result(await client.post(7, functions=["quick"])) == 7
    assert len(receiver.to("/meanwhile")) == 1


async def test_the_allowlist_matches_host_names_whatever_their_case(
    client: Client, redis_url: str, queue: str, receiver: Receiver
) -> None:
    shouting = replace(LOOPBACK, allowed_hosts=("LocalHost",))
    url = receiver.base.replace("127.0.0.1", "localHOST") + "/ok"
    async with running_worker(_listeners(), queue=queue, redis_url=redis_url, callbacks=shouting):
        job_id = await client.post(1, functions=["quick"], callback=url)
        await settled(client, job_id, "delivered", 10)
    assert [r.url.split("?")[0] for r in receiver.requests] == [url.lower()]


async def test_a_failed_callback_is_retried_after_its_backoff_not_the_dispatcher_s_idle_wait(
    client: Client, redis_url: str, queue: str, receiver: Receiver
) -> None:
    # an idle dispatcher sleeps up to idle_wait (a minute here) unless told of a retry
    drowsy = replace(LOOPBACK, idle_wait=60.0, lease=120.0)
    async with running_worker(_listeners(), queue=queue, redis_url=redis_url, callbacks=drowsy):
        await client.post("x", functions=["quick"], callback=f"{receiver.base}/flaky")
        await receiver.until("/flaky", 3, timeout=20)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_callbacks_to_loopback_are_refused_by_default_and_delivered_once_allowed(
    client: Client, redis_url: str, queue: str, receiver: Receiver, host: str
) -> None:
    # Whoever may post chooses the URL and reads the outcome back: by default that must not
    # reach the daemon's own network, whether named by address or by a name resolving to it.
    url = receiver.base.replace("127.0.0.1", host) + "/ok"
    once = replace(FAST_CALLBACKS, attempts=1)
    async with running_worker(_listeners(), queue=queue, redis_url=redis_url, callbacks=once):
        job_id = await client.post(1, functions=["quick"], callback=url)
        [line] = (await settled(client, job_id, "failed")).callback_log
    assert receiver.requests == []
    refused = (
        "refused: a loopback address" if host == "127.0.0.1" else "resolves only to a loopback"
    )
    assert refused in line and "callback_allow_networks" in line, line

    allowed = replace(once, allow_networks=("127.0.0.0/8",))
    async with running_worker(_listeners(), queue=queue, redis_url=redis_url, callbacks=allowed):
        job_id = await client.post(1, functions=["quick"], callback=url)
        [call] = await receiver.until("/ok", 1)
    assert call.url.startswith(url) and f"job_id={job_id}" in call.url


async def test_deliveries_lost_to_dispatcher_crashes_spend_no_attempt_and_are_bounded_apart(
    client: Client, redis_url: str, queue: str
) -> None:
    # A dispatcher that claims a delivery and vanishes, again and again (as one whose receiver
    # answers with something that kills it would): each lapse is re-tried without touching
    # the job's callback_attempts, and after CRASH_RETRIES of them the callback is given up.
    job_id = await client.post(1, functions=["quick"], callback="https://hooks.example.org/x")
    await run_until_idle(_listeners(), queue=queue, redis_url=redis_url, callbacks=None)
    claims = 0
    with anyio.fail_after(20):
        while (await client.get_job(job_id)).callback_state != "failed":
            _, claimed = await client.store.claim_callbacks(1, 1, CRASH_RETRIES)  # 1 ms lease
            claims += len(claimed)
            await anyio.sleep(0.01)  # past that lease
    job = await client.get_job(job_id)
    assert claims == 1 + CRASH_RETRIES
    assert job.callback_attempts == 0  # none of the receiver's budget
    assert [line.split(" ", 1)[1] for line in job.callback_log] == [
        "dispatcher stopped mid-delivery: tried again, not counted as an attempt"
    ] * CRASH_RETRIES + [f"dispatcher stopped mid-delivery {CRASH_RETRIES + 1} times: given up"]


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_the_signature_is_verifiable_from_the_request_the_receiver_gets(
    client: Client, redis_url: str, queue: str, receiver: Receiver, method: str
) -> None:
    # Userinfo goes as Basic auth and a fragment is never sent; the host is sent lower-case
    # and a default port not at all: the signed URL is the one the receiver can rebuild.
    port = receiver.base.rsplit(":", 1)[1]
    url = f"http://hook:pa%20ss@LocalHost:{port}/ok/a%2Fb?x=1#part"
    async with running_worker(_listeners(), queue=queue, redis_url=redis_url, callbacks=SIGNED):
        await client.post(1, functions=["quick"], callback=url, callback_method=method)
        [call] = await receiver.until("/ok", 1)
    assert call.url.startswith(f"http://localhost:{port}/ok/a%2Fb?x=1")
    timestamp = call.headers["X-Aqueue-Timestamp"]
    expected = signature(SECRET, timestamp, method, call.url, call.body)
    assert call.headers["X-Aqueue-Signature"] == expected
    assert call.headers["Authorization"] == "Basic " + base64.b64encode(b"hook:pa ss").decode()


async def test_the_resolver_passes_on_only_the_addresses_callbacks_may_reach() -> None:
    # What the connector dials is what the guard returned: names resolving only to refused
    # addresses fail; of a mixed answer only the allowed addresses are kept.
    from aqueue._services.callback_guard import CallbackRefused, guarded_resolver, parse_networks

    strict, loopback = guarded_resolver(()), guarded_resolver(parse_networks(("127.0.0.0/8",)))
    with pytest.raises(CallbackRefused, match="'localhost' refused: it resolves only to a loop"):
        await strict.resolve("localhost", 80, socket.AF_UNSPEC)
    results = await loopback.resolve("localhost", 80, socket.AF_UNSPEC)
    await strict.close()
    await loopback.close()
    assert results and {r["host"] for r in results} <= {"127.0.0.1"}  # ::1 is not allowed

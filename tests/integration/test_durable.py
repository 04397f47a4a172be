"""Durable writes on request, on a master with one replica started here: post(durable=True)
returns once the replica has the job (WAIT, pipelined after the script), and raises
NotDurable naming what was met while the replica is paused (SIGSTOP), the job posted all the
same; the `replicas` setting makes a worker's finishes wait too. Every face takes `durable`."""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis

from aqueue import (
    Client,
    ClientConfig,
    ConfigError,
    Context,
    JobStatus,
    Listeners,
    NotDurable,
    SyncClient,
    Worker,
    WorkerConfig,
)
from aqueue._http.base import HttpConfig
from aqueue._redis.keys import Keys
from aqueue._redis.store import Store
from aqueue.config import Durability
from aqueue.testing import RedisServer, running_worker, until
from tests.topologies import Replicated

from .test_cli import aqueue
from .test_http import serving


@pytest.fixture(scope="module")
def replica(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, RedisServer]]:
    """A master and its replica, connected (the master counts it) before the tests start."""
    pair = Replicated(tmp_path_factory.mktemp("replicated")).start()
    yield pair.master, pair.replica
    pair.stop()


@contextlib.contextmanager
def paused(server: RedisServer) -> Iterator[None]:
    """The server stopped (SIGSTOP): it acknowledges nothing until the block ends."""
    assert server.process is not None
    server.process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        server.process.send_signal(signal.SIGCONT)


async def _on_replica(copy: RedisServer, key: str) -> bool:
    async with aioredis.Redis(port=copy.port) as r:
        return bool(await r.exists(key))


async def test_a_durable_post_returns_once_the_replica_has_it(
    replica: tuple[RedisServer, RedisServer], queue: str
) -> None:
    master, copy = replica
    async with Client(queue, redis_url=master.url) as client:
        for _ in range(5):  # each of them, at once: not one the replica has yet to read
            job_id = await client.post({"n": 1}, durable=True)
            assert await _on_replica(copy, Keys(queue).job(job_id))
        ids = await client.post_many([1, 2, 3], durable=True)
        assert [await _on_replica(copy, Keys(queue).job(i)) for i in ids] == [True] * 3


async def test_a_paused_replica_makes_a_durable_post_raise_naming_what_was_met(
    replica: tuple[RedisServer, RedisServer], queue: str
) -> None:
    master, copy = replica
    config = ClientConfig(queue=queue, redis_url=master.url, durable_timeout=0.3)
    async with Client(config=config) as client:
        with paused(copy):
            with anyio.fail_after(5), pytest.raises(NotDurable) as short:
                await client.post({"n": 1}, durable=True)
            with anyio.fail_after(5), pytest.raises(NotDurable) as many:
                await client.post_many(["a", "b"], durable=True)
            plain = await client.post("plain")  # a plain post waits for no one
        assert "0 of 1 replicas acknowledged within 0.3 s" in str(short.value)
        assert "not rolled back" in str(short.value)
        [job_id] = short.value.job_ids
        assert (await client.get_job(job_id)).status is JobStatus.QUEUED  # posted all the same
        assert len(many.value.job_ids) == 2
        for i in [*many.value.job_ids, plain]:
            assert (await client.get_job(i)).status is JobStatus.QUEUED


async def test_the_replicas_setting_makes_every_post_durable_and_counts_them(
    replica: tuple[RedisServer, RedisServer], queue: str
) -> None:
    master, _ = replica
    config = ClientConfig(queue=queue, redis_url=master.url, replicas=2, durable_timeout=0.2)
    async with Client(config=config) as client:
        with anyio.fail_after(5), pytest.raises(NotDurable, match="1 of 2 replicas"):
            await client.post("x")  # one replica there is: not the two asked for


async def test_durable_local_is_refused_where_the_server_cannot_confirm_it(
    replica: tuple[RedisServer, RedisServer], queue: str
) -> None:
    master, _ = replica
    async with aioredis.Redis(port=master.port) as r:
        version = (await r.info("server"))["redis_version"]
    config = ClientConfig(queue=queue, redis_url=master.url, durable_local=True)
    async with Client(config=config) as client:
        if tuple(map(int, version.split(".")[:2])) >= (7, 2):
            await client.post("x")  # WAITAOF 1 0: the master's AOF (appendonly yes) fsynced
            return
        with pytest.raises(ConfigError, match=r"durable_local needs WAITAOF, of Redis 7\.2"):
            await client.post("x")
        assert (await client.counts())["queued"] == 0  # refused before anything was written
    worker = Worker(_echo(), WorkerConfig(queue=queue, durable_local=True), redis_url=master.url)
    refused = pytest.RaisesGroup(
        pytest.RaisesExc(ConfigError, match="durable_local needs WAITAOF"), flatten_subgroups=True
    )
    with anyio.fail_after(10), refused:
        await worker.run(burst=True)  # at its start, not at its first finish


def _echo(posted: list[str] | None = None) -> Listeners:
    listeners = Listeners()

    @listeners.listener
    async def echo(msg: Any, ctx: Context) -> Any:
        if posted is not None and msg == "post":
            posted.append(await ctx.post("child", durable=True))
        return msg

    return listeners


async def test_the_setting_makes_a_worker_s_finishes_wait_and_wait_again(
    replica: tuple[RedisServer, RedisServer], queue: str, caplog: pytest.LogCaptureFixture
) -> None:
    master, copy = replica
    caplog.set_level(logging.INFO, logger="aqueue._worker.acks")
    async with Client(queue, redis_url=master.url) as client:
        job_id = await client.post("live")
        async with running_worker(
            _echo(), queue=queue, redis_url=master.url, replicas=1, durable_timeout=0.3
        ):
            with anyio.fail_after(10):
                assert await client.block_until_result(job_id) == "live"
            assert "not durable" not in caplog.text  # the replica acknowledged it
            with paused(copy):
                job_id = await client.post("paused")
                with anyio.fail_after(10):  # recorded, whatever the replica does
                    assert await client.block_until_result(job_id) == "paused"
                await until(lambda: "outcomes recorded but not durable" in caplog.text)
            await until(lambda: "now durable" in caplog.text)
        stats = await client.store.redis.hgetall(Keys(queue).stats)
    assert stats[b"complete"] == b"2"  # each finished once: the retry waits, never finishes
    assert int(stats[b"durable_rewaits"]) >= 1
    assert "0 of 1 replicas acknowledged within 0.3 s" in caplog.text
    assert await _on_replica(copy, Keys(queue).job(job_id))


async def test_every_face_takes_durable(
    replica: tuple[RedisServer, RedisServer], queue: str, tmp_path: Path
) -> None:
    master, copy = replica
    keys = Keys(queue)

    def sync_post() -> str:
        with SyncClient(queue, redis_url=master.url) as client:
            return client.post("sync", durable=True)

    assert await _on_replica(copy, keys.job(await anyio.to_thread.run_sync(sync_post)))

    posted: list[str] = []
    async with Client(queue, redis_url=master.url) as client:
        async with running_worker(_echo(posted), queue=queue, redis_url=master.url):
            parent = await client.post("post")
            with anyio.fail_after(10):
                await client.block_until_result(parent)
        [child] = posted  # Context.post
        assert (await client.get_job(child)).msg == "child"

    config = HttpConfig(port=0, redis_url=master.url, queue=queue, keepalive=0.3)
    async with serving(config) as api:
        created = await api.post({"msg": "http", "durable": True})
        assert await _on_replica(copy, keys.job(created["id"]))
        await api.post({"msg": "http", "durable": "yes"}, 422)

    code, out, err = await aqueue("post", '"cli"', "--durable", "--redis-url", master.url,
                                  "--queue", queue)  # fmt: skip
    assert code == 0, err
    assert await _on_replica(copy, keys.job(out.strip()))


async def test_a_short_durable_post_is_a_503_naming_the_posted_job(
    replica: tuple[RedisServer, RedisServer], queue: str
) -> None:
    master, copy = replica
    config = HttpConfig(port=0, redis_url=master.url, queue=queue, keepalive=0.3)
    async with serving(config) as api:
        with paused(copy):
            answer = await api.post({"msg": "http", "durable": True}, 503)
        assert answer["error"] == "not_durable" and "0 of 1 replicas" in answer["detail"]
        assert (answer["replicas"], answer["acknowledged"]) == (1, 0)
        record = await api.json("GET", f"/jobs/{answer['id']}", 200)
        assert record["status"] == "queued"


async def test_through_the_pool_too_and_after_the_scripts_were_flushed(
    replica: tuple[RedisServer, RedisServer], queue: str
) -> None:
    """A post the direct connection cannot make (busy, or Redis lost the scripts: NOSCRIPT,
    read with the WAIT's reply after it) goes through the pool, its wait in the same pipeline."""
    master, copy = replica
    config = ClientConfig(queue=queue, redis_url=master.url, durable_timeout=0.3)
    async with Client(config=config) as client:
        await client.store.redis.script_flush()
        job_id = await client.post("after a flush", durable=True)  # NOSCRIPT, then the pool
        assert await _on_replica(copy, Keys(queue).job(job_id))
        assert await client.post("again", durable=True)  # the direct connection still in step
        pooled = Client.over(Store(client.store.redis, queue), config)  # no direct connection
        job_id = await pooled.post("pooled", durable=True)
        assert await _on_replica(copy, Keys(queue).job(job_id))
        with paused(copy), anyio.fail_after(5), pytest.raises(NotDurable, match="0 of 1"):
            await pooled.post("pooled, paused", durable=True)


async def test_the_settings_make_the_http_service_s_and_the_shell_s_posts_durable(
    replica: tuple[RedisServer, RedisServer], queue: str
) -> None:
    master, copy = replica
    every = Durability(replicas=1, timeout=0.3)
    config = HttpConfig(port=0, redis_url=master.url, queue=queue, keepalive=0.3, durable=every)
    async with serving(config) as api:
        with paused(copy):
            answer = await api.post({"msg": "not asked, still durable"}, 503)
        assert answer["error"] == "not_durable" and answer["acknowledged"] == 0
    env = {"AQUEUE_REPLICAS": "2", "AQUEUE_DURABLE_TIMEOUT": "0.2"}
    code, _, err = await aqueue("post", '"cli"', "--redis-url", master.url, "--queue", queue,
                                  env=env)  # fmt: skip
    assert code == 1 and "1 of 2 replicas acknowledged within 0.2 s" in err

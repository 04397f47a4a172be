"""A cluster at its edges, in one process: URLs that name the wrong thing (no cluster node
answers, a single Redis given as a cluster, a cluster node given as a single Redis), and what
the client, the CLI, a worker and the HTTP service then say; bad data planted in a queue's
keys on a cluster; many queues' event streams through one HTTP service."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from functools import partial

import anyio.to_thread
import msgpack
import pytest
import redis
import redis.asyncio as aioredis

from aqueue import Client, ConfigError, Context, JobNotFound, Listeners, RedisUnavailable
from aqueue._http.service import HttpConfig
from aqueue._redis.keys import Keys
from aqueue._redis.server import free_port
from aqueue._services.reaper import reap_once
from aqueue._worker.worker import Worker
from aqueue.config import WorkerConfig
from aqueue.testing import RedisServer, running_worker, until

from ..topologies import Cluster
from .test_cli import aqueue
from .test_connections import _listeners  # an echo listener
from .test_http import serving


def _nobody() -> str:
    """A cluster URL none of whose nodes listens."""
    return f"redis+cluster://127.0.0.1:{free_port()},127.0.0.1:{free_port()}"


def _master_of(cluster: Cluster, queue: str) -> int:
    """The port of the master that holds the queue's slot."""
    with redis.RedisCluster(host="127.0.0.1", port=cluster.masters[0].port) as client:
        return int(client.get_node_from_key(Keys(queue).stats).port)


async def _queues_on(cluster: Cluster, port: int, on: bool, count: int = 1) -> list[str]:
    """`count` queue names whose slot is (`on`) or is not on the master at `port`."""

    def pick() -> list[str]:
        found: list[str] = []
        with redis.RedisCluster(host="127.0.0.1", port=cluster.masters[0].port) as client:
            for name in (f"edge-{n}" for n in range(10_000)):
                if (client.get_node_from_key(Keys(name).stats).port == port) == on:
                    found.append(name)
                    if len(found) == count:
                        return found
        raise AssertionError(f"fewer than {count} such queues")

    return await anyio.to_thread.run_sync(pick)


# -- URLs that name the wrong thing ----------------------------------------------------------


async def test_a_client_of_a_cluster_none_of_whose_nodes_answers_raises_redis_unavailable(
    queue: str,
) -> None:
    """redis-py's RedisClusterUnreachableError is no RedisError: it left the client raw."""
    with anyio.fail_after(10), pytest.raises(RedisUnavailable, match="unreachable"):
        async with Client(queue, redis_url=_nobody()):
            pass


async def test_the_cli_says_a_cluster_that_does_not_answer_is_unreachable_without_a_traceback(
    queue: str,
) -> None:
    for command in (["post", "1"], ["status"], ["check"]):
        code, _, err = await aqueue(*command, "--redis-url", _nobody(), "--queue", queue)
        assert code == 1, err
        assert "Redis unreachable" in err and "Traceback" not in err, err


async def test_a_single_redis_given_as_a_cluster_is_named_as_not_a_cluster_node(
    redis_server: RedisServer, queue: str
) -> None:
    url = f"redis+cluster://127.0.0.1:{redis_server.port}"
    with anyio.fail_after(10), pytest.raises(RedisUnavailable) as refused:
        async with Client(queue, redis_url=url):
            pass
    assert "not a node of a Redis Cluster" in str(refused.value)
    assert "redis://" in str(refused.value)  # what to give instead
    code, _, err = await aqueue("post", "1", "--redis-url", url, "--queue", queue)
    assert code == 1 and "not a node of a Redis Cluster" in err and "Traceback" not in err, err


async def test_a_cluster_node_given_as_a_single_redis_is_refused_at_open_for_every_queue(
    redis_cluster: Cluster,
) -> None:
    """Before, a queue on another master failed each call with 'Redis refused the command
    (14480 127.0.0.1:15478)', and one on this master worked, without the cluster's rules
    (no fence against a migration, no sharded pub/sub)."""
    node = redis_cluster.masters[0]
    [here] = await _queues_on(redis_cluster, node.port, on=True)
    [elsewhere] = await _queues_on(redis_cluster, node.port, on=False)
    for queue in (here, elsewhere):
        with anyio.fail_after(10), pytest.raises(ConfigError) as refused:
            async with Client(queue, redis_url=node.url):
                pass
        assert f"127.0.0.1:{node.port} is a node of a Redis Cluster" in str(refused.value)
        assert "redis+cluster://" in str(refused.value)
    code, _, err = await aqueue("post", "1", "--redis-url", node.url, "--queue", elsewhere)
    assert code == 1 and "is a node of a Redis Cluster" in err, err


async def test_a_worker_given_a_cluster_node_as_a_single_redis_stops_at_start_saying_so(
    redis_cluster: Cluster,
) -> None:
    """A worker opens its Redis unchecked (to ride out one that is down): it ran a queue of
    this node's slots without a cluster's rules, and failed every call of another's."""
    node = redis_cluster.masters[0]
    [here] = await _queues_on(redis_cluster, node.port, on=True)
    config = WorkerConfig(queue=here, heartbeat=0.1, grace=2.0)
    worker = Worker(_listeners(), config, redis_url=node.url)
    with anyio.fail_after(10), pytest.raises(ConfigError, match="is a node of a Redis Cluster"):
        await worker.run()


async def test_a_call_a_cluster_node_redirects_names_moved_and_the_url_to_give(
    redis_cluster: Cluster,
) -> None:
    """Where the open cannot tell (an ACL user without INFO), the MOVED reply says it: it
    read 'Redis refused the command (14480 127.0.0.1:15478)'."""
    node = redis_cluster.masters[0]
    [elsewhere] = await _queues_on(redis_cluster, node.port, on=False)
    user = f"edge-{uuid.uuid4().hex[:8]}"  # on this node only (ACLs are per node)
    async with aioredis.Redis(port=node.port) as admin:
        await admin.acl_setuser(
            user, enabled=True, nopass=True, keys=["*"], channels=["*"],
            commands=["+@all", "-info"],
        )  # fmt: skip
    try:
        url = f"redis://{user}@127.0.0.1:{node.port}/0"
        async with Client(elsewhere, redis_url=url) as client:
            with anyio.fail_after(10), pytest.raises(RedisUnavailable) as moved:
                await client.post(1)
        assert "MOVED" in str(moved.value) and "redis+cluster://" in str(moved.value)
    finally:
        async with aioredis.Redis(port=node.port) as admin:
            await admin.acl_deluser(user)


async def test_the_http_service_on_a_cluster_that_does_not_answer_serves_and_is_not_ready(
    queue: str,
) -> None:
    config = HttpConfig(port=0, redis_url=_nobody(), queue=queue, keepalive=0.3)
    with anyio.fail_after(20):
        async with serving(config) as api:
            async with api.session.get("/healthz") as alive:
                assert alive.status == 200
            async with api.session.get("/readyz") as ready:
                assert ready.status == 503
            async with api.session.get("/queues") as queues:
                assert queues.status == 503
                assert "unreachable" in (await queues.text())


# -- bad data planted in a queue's keys, on a cluster ------------------------------------------


@pytest.fixture
async def on_cluster(redis_cluster: Cluster, queue: str) -> AsyncIterator[Client]:
    async with Client(queue, redis_url=redis_cluster.url) as client:
        yield client


async def test_on_a_cluster_keys_of_the_wrong_type_leave_the_queue_listed_and_read(
    on_cluster: Client, redis_cluster: Cluster, queue: str
) -> None:
    """The reads of `aqueue status` and GET /queues go through a cluster pipeline there."""
    client = on_cluster
    keys, redis = client.store.keys, client.store.redis
    planted = await client.post(1, functions=["echo"])
    await client.post(2, functions=["echo"])
    await redis.delete(keys.job(planted))
    await redis.rpush(keys.job(planted), "not a record")
    await redis.set(keys.workers, "not a zset")
    await redis.set(keys.suspects, "not a set")
    config = HttpConfig(port=0, redis_url=redis_cluster.url, queue=queue)
    async with serving(config) as api:
        listed = await api.json("GET", "/queues", 200)
        assert queue in [q["queue"] for q in listed["queues"]]
        mine = await api.json("GET", f"/queues/{queue}", 200)
        assert (mine["queued"], mine["workers"]) == (2, [])
    code, out, err = await aqueue("status", "--redis-url", redis_cluster.url, "--queue", queue)
    assert code == 2 and queue in out, err  # 2: work and no worker
    await redis.set(keys.lanes, "not a set")  # where the queued jobs are: none found
    assert (await client.counts())["queued"] == 0


@pytest.mark.parametrize("key", ["lane:echo", "lanes", "idle", "scheduled"])
async def test_on_a_cluster_a_post_meets_a_key_of_the_wrong_type_as_absent_and_its_job_runs(
    on_cluster: Client, redis_cluster: Cluster, queue: str, key: str
) -> None:
    client = on_cluster
    await client.store.redis.set(client.store.keys.prefix + key, "a string")
    ids = [await client.post(n, functions=["echo"]) for n in range(3)]
    ids.append(await client.post(3, functions=["echo"], delay=0.001))
    async with running_worker(_listeners(), queue=queue, redis_url=redis_cluster.url):
        with anyio.fail_after(10):
            assert [await client.block_until_result(i) for i in ids] == [0, 1, 2, 3]


async def test_on_a_cluster_a_record_that_cannot_be_read_costs_only_itself(
    on_cluster: Client,
) -> None:
    client = on_cluster
    keys, redis = client.store.keys, client.store.redis
    listed, garbled, kept = [await client.post(n, functions=["echo"]) for n in range(3)]
    await redis.delete(keys.job(listed))
    await redis.rpush(keys.job(listed), "not a record")
    await redis.hset(keys.job(garbled), mapping={"prio": "high", "status": "zombie"})
    await redis.hset(keys.job(kept), "status", "dead")
    await redis.zadd(keys.dead, {listed: 1, garbled: 2, kept: 3})
    with pytest.raises(JobNotFound):
        await client.get_job(listed)
    job = await client.get_job(garbled)
    assert sorted(job.unreadable) == ["prio", "status"]
    assert [j.id for j in await client.dead_letters()] == [garbled, kept]


async def test_on_a_cluster_garbage_on_every_channel_a_worker_hears_is_ignored(
    on_cluster: Client, redis_cluster: Cluster, queue: str
) -> None:
    """Its channels are sharded there (SSUBSCRIBE): the garbage goes by SPUBLISH."""
    client = on_cluster
    keys = client.store.keys
    async with running_worker(_listeners(), queue=queue, redis_url=redis_cluster.url) as w:
        assert await client.block_until_result(await client.post(1, functions=["echo"])) == 1
        junk = [b"x", b"\xc1", msgpack.packb(["cancel"]), msgpack.packb(["cancel", [1]])]
        junk += [msgpack.packb([b"id", b"1", 0, b"\xc1"]), msgpack.packb(7)]
        for channel in (keys.control, keys.push(w.id), keys.wake, keys.callbacks):
            for data in junk:
                assert await client.store.redis.spublish(channel, data) == 1  # it heard
        with anyio.fail_after(10):
            assert await client.block_until_result(await client.post(2, functions=["echo"])) == 2


async def test_on_a_cluster_a_lapsed_job_whose_data_cannot_be_read_is_buried_alone(
    on_cluster: Client,
) -> None:
    client = on_cluster
    keys, redis = client.store.keys, client.store.redis
    bad_spec, bad_run, good = await client.post_many(range(3), functions=["echo"])
    assert len((await client.store.claim("gone", 1, 3, ["echo"])).jobs) == 3
    await redis.hset(keys.spec, bad_spec, b"\xc1 not msgpack")
    await redis.hset(keys.running, bad_run, "garbage")

    async def reaped() -> tuple[int, int, int] | None:  # once the leases (1 ms) lapsed
        return found if any(found := await reap_once(client.store)) else None

    assert await until(reaped) == (1, 2, 0)  # requeued, dead, promoted
    assert (await client.get_job(good)).status == "queued"
    assert sorted(j.id for j in await client.dead_letters()) == sorted([bad_spec, bad_run])


# -- many queues' event streams through one HTTP service -----------------------------------------

STREAMED_QUEUES = 30


def _ticking(go: anyio.Event) -> Listeners:
    listeners = Listeners()

    @listeners.listener
    async def tick(msg: int, ctx: Context) -> int:
        await go.wait()  # every stream is open: what follows reaches them by pub/sub alone
        for step in (1, 2, 3):
            await ctx.update_progress(step * 33, f"step {step}")
            await anyio.sleep(0.02)
        return msg

    return listeners


async def test_event_streams_of_many_queues_over_every_master_through_one_service_each_get_theirs(
    redis_cluster: Cluster, queue: str
) -> None:
    """The service holds one sharded subscription per node for every queue's stream, joined
    one stream after another while it reads: no stream waits on another node's quiet."""
    queues = [f"{queue}-{n}" for n in range(STREAMED_QUEUES)]
    go = anyio.Event()
    config = HttpConfig(port=0, redis_url=redis_cluster.url, queue=queues[0], keepalive=0.3)
    events: dict[str, list[str]] = {name: [] for name in queues}
    async with serving(config) as api, contextlib.AsyncExitStack() as workers:
        for name in queues:
            await workers.enter_async_context(
                running_worker(
                    _ticking(go), queue=name, redis_url=redis_cluster.url,
                    callbacks=None, reaper=False, concurrency=1,
                )
            )  # fmt: skip
        posted = {}
        for name in queues:
            created = await api.post({"msg": 1, "queue": name, "functions": ["tick"]})
            posted[name] = created["id"]
        nodes = {(await api.json("GET", f"/queues/{name}", 200))["node"] for name in queues}
        assert len(nodes) == 3  # the streams' channels are on every master

        async def stream(name: str) -> None:
            path = f"/jobs/{posted[name]}/events?queue={name}"
            async with api.session.get(path) as answer:
                assert answer.status == 200
                async for line in answer.content:
                    if line.startswith(b"event: "):
                        events[name].append(line[7:].strip().decode())

        def opened(name: str) -> list[str]:  # its first event: the state read once subscribed
            return events[name]

        with anyio.fail_after(30):
            async with anyio.create_task_group() as streams:
                for name in queues:  # each joins the shared subscription while it reads
                    streams.start_soon(stream, name)
                    await until(partial(opened, name), 10, what=f"{name}'s stream")
                go.set()
    starved = [name for name in queues if events[name][-1:] != ["outcome"]]
    assert not starved, {name: events[name] for name in starved}
    assert all(events[name].count("progress") >= 3 for name in queues), events


# -- aqueue check on a cluster --------------------------------------------------------


async def test_check_reads_the_settings_of_the_node_of_every_queue_it_is_given(
    redis_cluster: Cluster,
) -> None:
    """It read the first queue's node only: another queue's master could evict its jobs."""
    node = redis_cluster.masters[1]
    [first] = await _queues_on(redis_cluster, node.port, on=False)
    [evicting] = await _queues_on(redis_cluster, node.port, on=True)
    async with aioredis.Redis(port=node.port) as admin:
        await admin.config_set("maxmemory-policy", "allkeys-lru")
        try:
            code, out, err = await aqueue(
                "check", "--redis-url", redis_cluster.url, "--queue", first, "--queue", evicting
            )
        finally:
            await admin.config_set("maxmemory-policy", "noeviction")
    assert code == 0, err
    warned = [line for line in out.splitlines() if "allkeys-lru" in line]
    assert len(warned) == 1 and f"127.0.0.1:{node.port}" in warned[0] and evicting in warned[0]
    assert "ok: maxmemory-policy noeviction" in out  # the other queue's node


async def test_a_url_s_password_is_never_shown_in_what_is_said_of_it(
    redis_cluster: Cluster, redis_server: RedisServer, queue: str
) -> None:
    """'connecting to redis+cluster://bob:secret@...: the Redis Cluster refused (invalid
    username-password pair...)': the password went to the caller's logs and the terminal."""
    for where in (f"127.0.0.1:{redis_cluster.masters[0].port}", f"127.0.0.1:{redis_server.port}"):
        scheme = "redis+cluster" if where.endswith(str(redis_cluster.masters[0].port)) else "redis"
        url = f"{scheme}://bob:s3cr3t-pw@{where}"
        with anyio.fail_after(10), pytest.raises(RedisUnavailable) as refused:
            async with Client(queue, redis_url=url):
                pass
        assert "s3cr3t-pw" not in str(refused.value) and "bob:***@" in str(refused.value)
        code, out, err = await aqueue("check", "--redis-url", url, "--queue", queue)
        assert code == 1 and "s3cr3t-pw" not in out + err, out + err
    code, out, err = await aqueue(
        "check", "--redis-url", redis_cluster.url.replace("//", "//:pw-only@"), "--queue", queue
    )
    assert "pw-only" not in out + err, out + err
    invalid = "redis+cluster://bob:s3cr3t-pw@127.0.0.1"  # no port: refused as it is read
    for given in (["--redis-url", invalid], []):
        code, _, err = await aqueue("status", *given, env={"AQUEUE_REDIS_URL": invalid})
        assert code in (1, 64) and "HOST:PORT" in err and "s3cr3t-pw" not in err, err

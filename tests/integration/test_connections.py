"""Reaching Redis: passwords, ACL users, unix sockets, the embedded default, the sync face."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import anyio
import pytest
from redis.asyncio import Redis

from aqueue import (
    Client,
    Context,
    JobNotFound,
    JobStatus,
    Listeners,
    RedisUnavailable,
    SyncClient,
)
from aqueue._redis.direct import MISSED, Direct, pool_connection
from aqueue._redis.store import connect
from aqueue.testing import RedisServer, run_until_idle

NO_SUCH_SCRIPT = "0" * 40


def _listeners() -> Listeners:
    listeners = Listeners()

    @listeners.listener
    async def echo(msg: Any, ctx: Context) -> Any:
        return msg

    return listeners


@pytest.fixture
def guarded_redis(tmp_path: Path) -> Any:
    socket = tmp_path / "r.sock"
    server = RedisServer(
        tmp_path / "data",
        password="s3cret",
        extra={"unixsocket": str(socket), "unixsocketperm": "700"},
    ).start()
    yield server, socket
    server.stop()


async def test_password_acl_user_and_unix_socket_urls_all_work(
    guarded_redis: tuple[RedisServer, Path], queue: str
) -> None:
    server, socket = guarded_redis
    async with Client(queue, redis_url=f"redis://:s3cret@127.0.0.1:{server.port}/0") as admin:
        await admin.store.redis.acl_setuser(
            "app", enabled=True, passwords=["+app-pw"], keys=["*"], channels=["*"],
            commands=["+@all"],
        )  # fmt: skip
    urls = [
        f"redis://:s3cret@127.0.0.1:{server.port}/0",
        f"redis://app:app-pw@127.0.0.1:{server.port}/0",
        f"unix://{socket}?db=0&password=s3cret",
    ]
    for url in urls:
        async with Client(queue, redis_url=url) as client:
            job_id = await client.post(url)
            await run_until_idle(_listeners(), queue=queue, redis_url=url)
            assert await client.block_until_result(job_id, timeout=5) == url


async def test_a_wrong_password_is_a_clear_error_at_once(
    guarded_redis: tuple[RedisServer, Path], queue: str
) -> None:
    server, _ = guarded_redis
    with pytest.raises(RedisUnavailable, match=r"connecting to redis://.*(WRONGPASS|invalid)"):
        async with Client(queue, redis_url=f"redis://:wrong@127.0.0.1:{server.port}/0"):
            pass


async def test_without_a_url_a_private_embedded_redis_is_started_and_stopped(
    tmp_path: Path, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AQUEUE_REDIS_URL", raising=False)
    monkeypatch.setenv("AQUEUE_HOME", str(tmp_path))
    async with Client(queue) as client:
        url_file = tmp_path / "redis" / "redis.url"
        url = url_file.read_text().strip()
        assert url.startswith("redis://127.0.0.1:")
        job_id = await client.post("embedded")
        await run_until_idle(_listeners(), queue=queue, redis_url=None)  # shares it
        assert await client.block_until_result(job_id, timeout=5) == "embedded"
        info = await client.store.redis.config_get("appendonly")
        assert info["appendonly"] == "yes"  # persistence on
    assert not url_file.exists()
    async with Client(queue) as again:  # a new server on the same folder: the data survived
        assert (await again.get_job(job_id)).result == "embedded"


def test_the_sync_client_works_from_plain_threads(redis_server: RedisServer, queue: str) -> None:
    """A Flask-style caller: no event loop of its own, several threads sharing one client."""
    results: dict[int, Any] = {}
    with SyncClient(queue, redis_url=redis_server.url) as client:
        ids = client.post_many(range(5))

        def await_one(i: int) -> None:
            results[i] = client.block_until_result(ids[i], timeout=10)

        threads = [threading.Thread(target=await_one, args=(i,)) for i in range(5)]
        for t in threads:
            t.start()
        anyio.run(lambda: run_until_idle(_listeners(), queue=queue, redis_url=redis_server.url))
        for t in threads:
            t.join(10)
        assert results == {i: i for i in range(5)}
        assert client.get_job(ids[0]).result == 0
        with pytest.raises(JobNotFound):
            client.get_job("missing")
    with pytest.raises(RuntimeError, match="open the client first"):  # not the portal's words
        client.get_job(ids[0])


# A client's script calls go over one connection of its own when it is free
# (aqueue/_redis/direct.py), and through the pool when it is busy or fails. The stories below
# are the ways that can go wrong.


async def test_a_post_cut_short_leaves_no_reply_behind_for_the_next(
    private_redis: RedisServer, queue: str
) -> None:
    async with Client(queue, redis_url=private_redis.url) as client:
        await client.post("warm-up")  # the direct connection is open
        await client.store.redis.client_pause(300)  # Redis answers nobody for 0.3 s
        with anyio.move_on_after(0.1) as cut:
            await client.post("cut short")
        assert cut.cancelled_caught
        # had the cut post's reply stayed unread, this post would read it as its own
        job_id = await client.post("next")
        assert (await client.get_job(job_id)).msg == "next"


async def test_posts_go_on_after_redis_drops_every_connection(
    private_redis: RedisServer, queue: str
) -> None:
    async with Client(queue, redis_url=private_redis.url) as client:
        await client.post("before")
        dropped = await client.store.redis.client_kill_filter(_type="normal", skipme=False)
        assert dropped >= 1
        job_id = await client.post("after")
        assert (await client.get_job(job_id)).msg == "after"
        assert (await client.counts())["queued"] == 2


async def test_posts_go_on_after_redis_forgets_its_scripts(
    private_redis: RedisServer, queue: str
) -> None:
    async with Client(queue, redis_url=private_redis.url) as client:
        await client.post("before")
        await client.store.redis.script_flush()
        job_id = await client.post("after")
        assert (await client.get_job(job_id)).msg == "after"


async def test_script_calls_made_at_once_are_served_beside_the_busy_direct_connection(
    client: Client,
) -> None:
    ids = await client.post_many(range(200))

    async def cancel(job_id: str) -> None:
        assert await client.cancel(job_id) is JobStatus.QUEUED  # the status it had

    async with anyio.create_task_group() as cancels:  # one at a time is direct, the rest pooled
        for job_id in ids:
            cancels.start_soon(cancel, job_id)
    assert {(await client.get_job(i)).status for i in ids} == {JobStatus.CANCELLED}


@pytest.mark.parametrize("query", ["", "?socket_timeout=0.25"])
async def test_the_direct_connection_keeps_the_pool_s_deadline(
    redis_server: RedisServer, query: str
) -> None:
    # a Redis that stops answering fails a call after the socket timeout a pooled connection
    # has (the URL's, else redis-py's default), on the direct connection too: never a hang
    redis = connect(redis_server.url + query, 4, "deadline")
    assert isinstance(redis, Redis)
    try:
        pooled = redis.connection_pool.make_connection()  # type: ignore[no-untyped-call]
        direct = Direct(pool_connection(redis.connection_pool))
        assert await direct.evalsha(NO_SUCH_SCRIPT, [], []) is MISSED  # (it connected)
        assert pooled.socket_timeout is not None
        assert direct._timeout == pooled.socket_timeout
        await direct.aclose()
    finally:
        await redis.aclose()

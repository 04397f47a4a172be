"""Reaching Redis: passwords, ACL users, unix sockets, the embedded default, the sync face."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import anyio
import pytest

from aqueue import Client, Context, JobNotFound, Listeners, RedisUnavailable, SyncClient
from aqueue.testing import RedisServer, run_until_idle


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

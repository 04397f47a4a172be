"""Stateful handlers (PiCloud's `pre_handling` / `post_handling`): a listener object's setup
runs once before its first job, its teardown once when the worker stops; one that fails is
logged and kept in the worker's status, and the handler is served all the same."""

from __future__ import annotations

from typing import Any

import anyio.lowlevel

from aqueue import Client, Context, Listeners
from aqueue._redis.records import worker_infos
from aqueue.testing import running_worker, until


class PriceExtractor:
    """PiCloud's example: a 'database' opened once, prices looked up per message."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.db: dict[str, float] | None = None

    async def setup(self) -> None:
        self.calls.append("setup")
        self.db = {"apple": 1.5, "pear": 2.0}

    def teardown(self) -> None:  # a plain one runs in a thread
        self.calls.append("teardown")
        self.db = None

    async def __call__(self, item: str, ctx: Context) -> dict[str, Any]:
        self.calls.append(item)
        assert self.db is not None, "setup did not run first"
        return {"item": item, "price": self.db[item]}


class Broken:
    def pre_handling(self) -> None:  # PiCloud's name
        raise ConnectionError("the database is down")

    async def __call__(self, msg: int, ctx: Context) -> int:
        return msg


async def test_setup_runs_once_before_the_first_job_and_teardown_once_at_the_stop(
    redis_url: str, queue: str
) -> None:
    extractor = PriceExtractor()
    listeners = Listeners()
    listeners.add(extractor, name="prices")
    async with Client(queue, redis_url=redis_url) as client:
        ids = await client.post_many(["apple", "pear", "apple"])
        async with running_worker(listeners, queue=queue, redis_url=redis_url):
            results = [await client.block_until_result(i, timeout=20) for i in ids]
            assert extractor.calls[0] == "setup" and "teardown" not in extractor.calls
        assert [r["price"] for r in results] == [1.5, 2.0, 1.5]
        assert extractor.calls.count("setup") == 1
        assert extractor.calls[-1] == "teardown" and extractor.calls.count("teardown") == 1


async def test_a_failed_setup_is_kept_in_the_worker_s_status_and_the_handler_still_served(
    redis_url: str, queue: str
) -> None:
    listeners = Listeners()
    listeners.add(Broken(), name="broken")
    async with (
        Client(queue, redis_url=redis_url) as client,
        running_worker(listeners, queue=queue, redis_url=redis_url, heartbeat=0.05),
    ):
        assert await client.block_until_result(await client.post(7), timeout=20) == 7

        async def reported() -> list[dict[str, Any]]:
            infos = worker_infos(await client.store.live_workers())
            return [i for i in infos if i.get("handler_error")]

        [info] = await until(reported, 10)
        assert info["handler_error"] == (
            "broken.pre_handling: ConnectionError: the database is down"
        )
        await anyio.lowlevel.checkpoint()

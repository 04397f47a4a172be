"""The hand-over between batches of posts (aqueue/_redis/coalesce.py), driven step by step: `send`
here is a plain function that answers when the test lets it. What the posts do in Redis is
in tests/integration/test_coalesce.py."""

from __future__ import annotations

import asyncio

import pytest

from aqueue import RedisUnavailable
from aqueue._redis.calls import NewJobs
from aqueue._redis.coalesce import Coalescer


def _one(name: str) -> NewJobs:
    return NewJobs("f", 0, 0, 0, False, ("sig", "f"), [(name, "", b"spec")])


class _Redis:
    """Answers each call with its jobs' ids once `answer` is set; counts the calls."""

    def __init__(self) -> None:
        self.answer = asyncio.Event()
        self.calls: list[list[str]] = []

    async def send(self, new: NewJobs, key_ttl_ms: int) -> list[str]:
        self.calls.append([job_id for job_id, _, _ in new.jobs])
        await self.answer.wait()
        return [job_id for job_id, _, _ in new.jobs]


async def test_a_post_whose_turn_to_lead_comes_as_it_is_cancelled_hands_the_turn_on() -> None:
    redis = _Redis()
    posts = Coalescer(redis.send)
    first = asyncio.create_task(posts.post(_one("a"), 1))
    await asyncio.sleep(0)  # "a" is on its way, alone
    second = asyncio.create_task(posts.post(_one("b"), 1))
    third = asyncio.create_task(posts.post(_one("c"), 1))
    await asyncio.sleep(0)  # "b" and "c" wait; "b" is to lead them
    redis.answer.set()
    assert await first == ["a"]  # its end gave "b" the turn, and "b" has not run since
    second.cancel()
    assert await asyncio.wait_for(third, 5) == ["c"]
    assert second.cancelled()
    assert redis.calls == [["a"], ["c"]]


async def _batch_on_its_way(
    redis: _Redis, posts: Coalescer, names: str
) -> list[asyncio.Task[list[str]]]:
    """Post "a" alone, then `names` while it is on its way, and answer "a" only: the posts
    of `names` go together, and wait for their answer."""
    first = asyncio.create_task(posts.post(_one("a"), 1))
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(posts.post(_one(name), 1)) for name in names]
    await asyncio.sleep(0)
    redis.answer.set()
    assert await first == ["a"]
    redis.answer.clear()
    for _ in range(5):  # the first of them leads: their batch is on its way
        await asyncio.sleep(0)
    assert redis.calls == [["a"], list(names)]
    return waiting


async def test_the_posts_of_a_batch_get_their_ids_though_its_leader_is_cancelled() -> None:
    redis = _Redis()
    waiting = await _batch_on_its_way(redis, Coalescer(redis.send), "bcd")
    waiting[0].cancel()
    await asyncio.sleep(0)
    redis.answer.set()
    assert [await asyncio.wait_for(t, 5) for t in waiting[1:]] == [["c"], ["d"]]
    assert waiting[0].cancelled()


async def test_an_error_reaches_every_post_of_its_call_and_no_other() -> None:
    calls: list[int] = []

    async def send(new: NewJobs, key_ttl_ms: int) -> list[str]:
        calls.append(key_ttl_ms)
        await asyncio.sleep(0.01)
        if key_ttl_ms == 2:
            raise RuntimeError("refused")
        return [job_id for job_id, _, _ in new.jobs]

    posts = Coalescer(send)
    first = asyncio.create_task(posts.post(_one("a"), 1))
    await asyncio.sleep(0)
    batch = [
        asyncio.create_task(posts.post(_one(n), ttl))
        for n, ttl in zip("bcd", (2, 1, 2), strict=True)
    ]
    results = await asyncio.gather(first, *batch, return_exceptions=True)
    assert results[0] == ["a"] and results[2] == ["c"]
    assert all(isinstance(r, RuntimeError) for r in (results[1], results[3]))
    assert calls == [1, 2, 1]  # "b" and "d" share their options: one call


async def test_a_post_cancelled_as_its_batch_fails_ends_cancelled_not_with_the_error() -> None:
    answer = asyncio.Event()
    cut: list[asyncio.Task[list[str]]] = []

    async def send(new: NewJobs, key_ttl_ms: int) -> list[str]:
        await answer.wait()
        if len(new.jobs) > 1:
            # "c" is cancelled after the failure reaches its turn, before it resumes
            asyncio.get_running_loop().call_soon(cut[0].cancel)
            raise RuntimeError("refused")
        return [job_id for job_id, _, _ in new.jobs]

    posts = Coalescer(send)
    first = asyncio.create_task(posts.post(_one("a"), 1))
    await asyncio.sleep(0)
    second = asyncio.create_task(posts.post(_one("b"), 1))
    cut.append(asyncio.create_task(posts.post(_one("c"), 1)))
    await asyncio.sleep(0)
    answer.set()
    assert await first == ["a"]
    results = await asyncio.gather(second, cut[0], return_exceptions=True)
    assert isinstance(results[0], RuntimeError)
    assert isinstance(results[1], asyncio.CancelledError)
    assert await asyncio.wait_for(posts.post(_one("d"), 1), 5) == ["d"]


async def test_closing_lets_posts_go_for_a_while_then_fails_what_is_left_clearly() -> None:
    redis = _Redis()
    posts = Coalescer(redis.send)
    batch = await _batch_on_its_way(redis, posts, "bc")  # and no answer comes
    late = asyncio.create_task(posts.post(_one("d"), 1))  # waits for the batch
    await asyncio.sleep(0)
    await posts.aclose(patience=0.05)
    for task in (*batch, late):
        with pytest.raises(RedisUnavailable, match="the client closed"):
            await task
    with pytest.raises(RuntimeError, match="closed"):
        await posts.post(_one("e"), 1)
    assert redis.calls == [["a"], ["b", "c"]]

"""Bad data costs only itself: garbage in a queue's keys or on its channels fails or skips that
one item, with a reason, and every daemon goes on serving the rest (DESIGN.md decision 13)."""

from __future__ import annotations

import anyio
import msgpack

from aqueue import Client, Context, Listeners
from aqueue.testing import RedisServer, running_worker


def _echo() -> Listeners:
    listeners = Listeners()

    @listeners.listener
    async def echo(msg: object, ctx: Context) -> object:
        return msg

    return listeners


async def test_garbage_on_every_channel_a_worker_hears_is_ignored_and_it_serves_on(
    client: Client, redis_server: RedisServer, queue: str
) -> None:
    keys = client.store.keys
    async with running_worker(_echo(), queue=queue, redis_url=redis_server.url) as worker:
        assert await client.block_until_result(await client.post(1, functions=["echo"])) == 1
        junk = [b"x", b"\xc1", msgpack.packb(["cancel"]), msgpack.packb(["cancel", [1]])]
        junk += [msgpack.packb([b"id", b"1", 0, b"\xc1"]), msgpack.packb(7)]
        for channel in (keys.control, keys.push(worker.id), keys.wake, keys.callbacks):
            for data in junk:
                assert await client.store.redis.publish(channel, data) == 1  # the worker heard
        # the worker read them all (each channel's messages come in order) and still serves
        with anyio.fail_after(10):
            assert await client.block_until_result(await client.post(2, functions=["echo"])) == 2

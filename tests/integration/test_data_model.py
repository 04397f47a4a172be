"""The data model is one for both languages: each wire format's Lua half (in lua/_lib.lua) and
its Python half (aqueue/_redis/wire.py) read what the other writes, hostile values included,
and the Lua key builders build the keys `Keys` does. The Lua runs in a real redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from aqueue._redis import scripts
from aqueue._redis.keys import KEYSPACE, Keys
from aqueue._redis.wire import ExpiryGroup, Idle, Names, Posted, Run, Tries
from aqueue.testing import RedisServer

from ..unit.test_wire import HOSTILE

TEXTS = [b"", b"a", b"a,b", b"x|y", b"|", b"\xff\xfe", b"a b\n", "é".encode()]


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def lua(redis: aioredis.Redis, code: str, *args: bytes | str | int) -> Any:
    """Run `code` with the shared helpers it uses, as a script is sent (macros expanded)."""
    return await redis.eval(scripts.with_helpers(code), 0, *args)


async def test_the_lua_builders_build_the_keys_python_does(redis: aioredis.Redis) -> None:
    keys = Keys("q.1")
    for key in KEYSPACE:
        fields = [f"<{name}>" for name in key.fields]
        args = ", ".join(f"ARGV[{i + 1}]" for i in range(len(fields) + 1))
        call = f"return {key.lua_builder}({args})"
        built = await lua(redis, call, keys.prefix, *fields)
        member = getattr(keys, key.attr)
        assert built.decode() == (member(*fields) if fields else member), key.attr


@pytest.mark.parametrize("text", TEXTS)
async def test_posted_written_by_either_is_read_by_the_other(
    redis: aioredis.Redis, text: bytes
) -> None:
    score = 2**44 * 200 + 5
    raw = await lua(redis, "return posted_entry(ARGV[1], ARGV[2], ARGV[3])", 17, score, text)
    assert raw == b"17|%d|" % score + text
    assert Posted.decode(raw) == Posted(17, score, text.decode(errors="replace"))
    read = "local s, c = lane_of(ARGV[1]) return {s, c}"
    assert await lua(redis, read, raw) == [text, str(score).encode()]
    written = Posted(17, score, text.decode(errors="replace")).encode()
    assert await lua(redis, read, written) == [written.split(b"|", 2)[2], str(score).encode()]


@pytest.mark.parametrize("raw", HOSTILE)
async def test_lua_and_python_read_any_posted_the_same(redis: aioredis.Redis, raw: bytes) -> None:
    found = await lua(redis, "local s, c = lane_of(ARGV[1]) return {s or false, c or false}", raw)
    python = Posted.decode(raw)
    if python is None:
        assert found == [None, None]
    else:
        assert found == [raw.split(b"|", 2)[2], str(python.score).encode()]
        assert python.signature == found[0].decode(errors="replace")


@pytest.mark.parametrize("worker", TEXTS)
async def test_a_run_entry_written_by_lua_is_read_by_python_and_back(
    redis: aioredis.Redis, worker: bytes
) -> None:
    raw = await lua(redis, "return run_entry(ARGV[1], ARGV[2], ARGV[3])", worker, 3, 1234)
    assert Run.decode(raw) == Run(worker.decode(errors="replace"), 3, 1234)
    parts = await lua(redis, "local w, a = run_parts(ARGV[1]) return {w, a}", raw)
    assert parts == [worker, b"3"]
    held = (
        "local r, w = ARGV[1], ARGV[2] return {holds(r, w, ARGV[3]) and 1, holds(r, w, '4') and 1}"
    )
    assert await lua(redis, held, raw, worker, 3) == [1, None]


@pytest.mark.parametrize("raw", HOSTILE)
async def test_lua_and_python_read_any_run_entry_the_same(
    redis: aioredis.Redis, raw: bytes
) -> None:
    found = await lua(redis, "local w, a = run_parts(ARGV[1]) return {w or false, a or false}", raw)
    python = Run.decode(raw)
    if python is None:
        assert found == [None, None]
    else:
        assert found == [raw.rsplit(b"|", 2)[0], str(python.attempt).encode()]
        assert python.worker == found[0].decode(errors="replace")


@pytest.mark.parametrize("tries", [Tries(0, 0), Tries(5, 2), Tries(9, 9, alone=True)])
async def test_tries_written_by_either_are_read_by_the_other(
    redis: aioredis.Redis, tries: Tries
) -> None:
    raw = await lua(redis, "return tries_entry(ARGV[1], ARGV[2], ARGV[3] == '1')", tries.attempts,
                    tries.released, int(tries.alone))  # fmt: skip
    assert raw == tries.encode()
    read = "local a, r, alone = tries_of(ARGV[1]) return {a, r, alone and 1 or 0}"
    assert await lua(redis, read, tries.encode()) == [tries.attempts, tries.released, tries.alone]


@pytest.mark.parametrize("raw", HOSTILE)
async def test_lua_and_python_read_any_tries_the_same(redis: aioredis.Redis, raw: bytes) -> None:
    read = "local a, r, alone = tries_of(ARGV[1]) return {a, r, alone and 1 or 0}"
    python = Tries.decode(raw) or Tries(0, 0)  # what cannot be read counts as none, in Lua
    assert await lua(redis, read, raw) == [python.attempts, python.released, int(python.alone)]


@pytest.mark.parametrize("names", TEXTS)
async def test_an_idle_entry_written_by_lua_is_read_by_python_and_back(
    redis: aioredis.Redis, names: bytes
) -> None:
    raw = await lua(redis, "return idle_entry(ARGV[1], ARGV[2], ARGV[3])", 4, 30000, names)
    assert Idle.decode(raw) == Idle(4, 30000, names.decode(errors="replace"))
    read = "local f, l, n = idle_of(ARGV[1]) return {f, l, n}"
    assert await lua(redis, read, raw) == [4, 30000, names]


@pytest.mark.parametrize("raw", HOSTILE)
async def test_lua_and_python_read_any_idle_entry_the_same(
    redis: aioredis.Redis, raw: bytes
) -> None:
    read = "local f, l, n = idle_of(ARGV[1]) if not f then return false end return {f, l, n}"
    found, python = await lua(redis, read, raw), Idle.decode(raw)
    if python is None:
        assert found is None
    else:
        assert found[:2] == [python.free, python.lease_ms]
        assert found[2].decode(errors="replace") == python.names


@pytest.mark.parametrize("names", [["b", "a", "b"], [], ["x.y", "a:b", "a"], ["é", "e"]])
async def test_a_kind_is_made_alike_by_both(redis: aioredis.Redis, names: list[str]) -> None:
    kind = await lua(redis, "local k = kind_of(ARGV) return k", *names)
    assert kind == Names.kind(names).encode()
    have = await lua(redis, "local s, out = names_in(ARGV[1]), {} for n in pairs(s) do "
                     "out[#out + 1] = n end table.sort(out) return out", kind)  # fmt: skip
    assert have == [n.encode() for n in Names.decode(kind).names]


@pytest.mark.parametrize("ids", [["a"], ["c", "a", "b"], [f"{i:x}" for i in range(300)]])
async def test_an_expiry_group_is_read_alike_by_both(redis: aioredis.Redis, ids: list[str]) -> None:
    group = await lua(redis, "return expiry_group(ARGV)", *ids)
    assert group == ExpiryGroup(tuple(ids)).encode()
    assert await lua(redis, "return expiry_group_ids(ARGV[1])", group) == [i.encode() for i in ids]
    assert ExpiryGroup.decode(group).ids == tuple(ids)

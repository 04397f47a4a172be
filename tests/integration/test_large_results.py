"""Results beyond 16 MiB: a worker setting for the limit, chunked storage, reads by Python and
by HTTP (streamed), and stored data served over HTTP by key. Real Redis, real HTTP."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
import redis.asyncio as aioredis

from aqueue import (
    Client,
    ConfigError,
    Context,
    JobFailed,
    JobNotFound,
    JobStatus,
    Listeners,
    MessageError,
    Output,
)
from aqueue._http.service import HttpConfig, serve_http
from aqueue._ops.cli import _load, _parser
from aqueue._ops.settings import resolve
from aqueue._redis.calls import Outcome
from aqueue._redis.results import CHUNK_BYTES
from aqueue._states import Event
from aqueue.config import WorkerConfig
from aqueue.testing import RedisServer, running_worker, until

BIG = 40_000_000  # over the 16 MiB a result could be before, and over Redis's 4 MiB chunks
READ = "r" * 24
# Leases long enough that encoding and reading 40 MB in this one process never lapses one
SLOW: dict[str, Any] = {"lease": 6.0, "heartbeat": 1.0, "max_result_bytes": 64 * 2**20}


def weights(size: int) -> bytes:
    """Bytes no two chunks of which are alike, so that a chunk out of order shows."""
    block = hashlib.sha256(str(size).encode()).digest() * 128  # 4 KiB
    return b"".join(i.to_bytes(4, "big") + block[4:] for i in range(-(-size // len(block))))[:size]


def make_listeners() -> Listeners:
    listeners = Listeners()

    @listeners.listener
    async def train(msg: dict[str, Any], ctx: Context) -> Any:
        blob = weights(msg["size"])
        if msg["as"] == "bytes":
            return Output(result=blob, short="trained")
        if msg["as"] == "text":
            return blob.hex()[: msg["size"]]
        return {"weights": blob, "epochs": 3}

    return listeners


@contextlib.asynccontextmanager
async def http(redis_url: str, queue: str, **settings: Any) -> AsyncIterator[aiohttp.ClientSession]:
    config = HttpConfig(port=0, redis_url=redis_url, queue=queue, **settings)
    async with anyio.create_task_group() as tg:
        port = await tg.start(serve_http, config)
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as session:
            yield session
        tg.cancel_scope.cancel()


async def test_a_result_over_16_mib_completes_and_reads_back_intact_by_python_and_http(
    redis_server: RedisServer, client: Client, queue: str
) -> None:
    listeners = make_listeners()
    blob = weights(BIG)
    async with running_worker(listeners, queue=queue, redis_url=redis_server.url, **SLOW):
        as_bytes = await client.post({"size": BIG, "as": "bytes"}, functions=["train"])
        with anyio.fail_after(60):  # posted watched: its reference comes with the event
            assert await client.block_until_result(as_bytes) == blob
        as_value = await client.post({"size": BIG, "as": "value"}, functions=["train"])
        as_text = await client.post({"size": BIG, "as": "text"}, functions=["train"])
        with anyio.fail_after(60):
            assert await client.block_until_result(as_value) == {"weights": blob, "epochs": 3}
            text = await client.block_until_result(as_text)
    assert text == blob.hex()[:BIG]
    assert await client.get_result(as_bytes) == blob
    job = await client.get_job(as_bytes)
    assert (job.status, job.short_result, job.result) == (JobStatus.COMPLETE, "trained", None)
    assert job.result_bytes == BIG + 6  # its envelope: a version byte, a bin 32 header
    redis = aioredis.Redis.from_url(redis_server.url)
    try:
        chunks = await redis.llen(f"aq:{{{queue}}}:blob:{as_bytes}")
        assert chunks == -(-(BIG + 6) // CHUNK_BYTES) and chunks > 1  # in chunks, not whole
        assert not [k async for k in redis.scan_iter(f"aq:{{{queue}}}:upload:*")]  # adopted
    finally:
        await redis.aclose()
    async with http(redis_server.url, queue) as session:
        for path, content_type in (
            (f"/jobs/{as_bytes}/result", "application/octet-stream"),
            (f"/jobs/{as_bytes}/result.safetensors", "application/octet-stream"),
            (f"/jobs/{as_bytes}/result.webm", "video/webm"),
        ):
            async with session.get(path) as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"] == content_type
                assert resp.headers["Content-Length"] == str(BIG)  # streamed, length known
                assert await resp.read() == blob
        async with session.get(f"/jobs/{as_text}/result.txt") as resp:
            assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
            assert await resp.read() == text.encode()
        async with session.get(f"/jobs/{as_value}/result.bin") as resp:
            assert resp.status == 406 and (await resp.json())["error"] == "not_binary"
        async with session.get(f"/jobs/{as_bytes}") as resp:
            record = await resp.json()
            assert (record["result"], record["result_bytes"]) == (None, BIG + 6)


async def test_a_result_over_the_setting_fails_its_job_naming_the_setting(
    redis_server: RedisServer, client: Client, queue: str
) -> None:
    settings: dict[str, Any] = {**SLOW, "max_result_bytes": 5 * 2**20}
    async with running_worker(
        make_listeners(), queue=queue, redis_url=redis_server.url, **settings
    ):
        over = await client.post({"size": 6 * 2**20, "as": "bytes"}, functions=["train"], retry=0)
        within = await client.post({"size": 5 * 2**20 - 6, "as": "bytes"}, functions=["train"])
        with anyio.fail_after(30):
            with pytest.raises(JobFailed) as failed:
                await client.block_until_result(over)
            assert await client.block_until_result(within) == weights(5 * 2**20 - 6)
    assert failed.value.error_type == "aqueue.errors.MessageTooLarge"
    message = failed.value.error_message or ""
    assert f"result is {6 * 2**20 + 6} bytes encoded, over the limit of {5 * 2**20}" in message
    assert "max_result_bytes (--max-result-bytes, AQUEUE_MAX_RESULT_BYTES)" in message
    assert (await client.get_job(over)).status is JobStatus.FAILED


async def test_a_refused_outcome_deletes_its_upload_and_an_expired_record_its_chunks(
    redis_server: RedisServer, client: Client, queue: str
) -> None:
    store = client.store
    redis = aioredis.Redis.from_url(redis_server.url)
    try:
        # An attempt that no longer holds its job (its lease lapsed): its chunks go
        upload = store.keys.upload("0" * 32, "ab")
        assert await store.upload_chunks(upload, [b"x" * 10, b"y" * 10], 60_000) == 2
        stale = Outcome(
            "0" * 32, 1, Event.COMPLETE, 0, ["result", b"\x02", "blob", "ab"], 60, False, 1, True
        )
        assert await store.finish("no-such-worker", [stale]) == [False]
        assert not await redis.exists(upload)
        # A completed one's go with its record, when it expires
        async with running_worker(
            make_listeners(), queue=queue, redis_url=redis_server.url, **SLOW
        ):
            job_id = await client.post(
                {"size": CHUNK_BYTES * 2, "as": "bytes"}, functions=["train"], ttl=1
            )
            with anyio.fail_after(30):
                await client.block_until_result(job_id)
                assert await redis.exists(store.keys.blob(job_id))

                async def swept() -> bool:  # the reaper sweeps every 0.1 s here
                    return not await redis.exists(store.keys.blob(job_id), store.keys.job(job_id))

                await until(swept, 30, interval=0.1)
    finally:
        await redis.aclose()


async def test_stored_data_is_served_over_http_by_key_behind_the_read_token(
    redis_server: RedisServer, client: Client, queue: str
) -> None:
    blob = weights(CHUNK_BYTES * 2 + 5)  # read in three ranges
    big = await client.store_data(blob, key="model/v1.safetensors")
    small = await client.store_data(b"\x00\xff", key="tiny")
    value = await client.store_data({"loss": 0.25, "raw": b"\x01"})
    async with http(redis_server.url, queue, read_tokens=(READ,)) as session:
        read = {"Authorization": f"Bearer {READ}"}
        async with session.get("/data/tiny") as resp:
            assert resp.status == 401
        async with session.get(
            "/data/tiny", headers={"Authorization": "Bearer " + "x" * 24}
        ) as resp:
            assert resp.status == 401
        async with session.get("/data/tiny", headers=read) as resp:
            assert resp.status == 200 and await resp.read() == b"\x00\xff"
        async with session.get(f"/data/{value}", headers=read) as resp:
            assert await resp.json() == {"loss": 0.25, "raw": {"base64": "AQ=="}}
        async with session.get("/data/model%2Fv1.safetensors", headers=read) as resp:
            assert resp.status == 200 and resp.headers["Content-Length"] == str(len(blob))
            assert await resp.read() == blob
        async with session.get("/data/none-here", headers=read) as resp:
            answer = await resp.json()
            assert resp.status == 404 and answer["error"] == "data_not_found"
            assert "none-here" in answer["detail"]
        async with session.get(f"/data/tiny?queue={queue}x", headers=read) as resp:
            assert resp.status == 404  # another queue's data is its own
    assert big == "model/v1.safetensors" and small == "tiny"


def test_the_result_limit_is_a_setting_of_the_toml_environment_and_command_line() -> None:
    assert WorkerConfig().max_result_bytes == 16 * 2**20  # as before
    assert resolve({"max_result_bytes": "1GiB"}).worker_config("q").max_result_bytes == 2**30
    environ = {"AQUEUE_MAX_RESULT_BYTES": "500MB"}
    assert resolve(environ=environ).worker_config("q").max_result_bytes == 500_000_000
    args = _parser().parse_args(["worker", "--max-result-bytes", "64MiB"])
    assert _load(args).worker_config("q").max_result_bytes == 64 * 2**20
    with pytest.raises(ConfigError, match=r"max_result_bytes = '3GiB' in .* at most|2GiB"):
        resolve({"max_result_bytes": "3GiB"}, "gpu.toml")
    with pytest.raises(
        ConfigError, match="max_result_bytes must be a whole number from 1 to 2147483648"
    ):
        WorkerConfig(max_result_bytes=2**31 + 1)
    with pytest.raises(SystemExit):
        _parser().parse_args(["worker", "--max-result-bytes", "lots"])


@pytest.mark.parametrize("size", [CHUNK_BYTES - 6, CHUNK_BYTES - 5, CHUNK_BYTES * 3])
async def test_results_at_the_edge_of_a_chunk_read_back_intact(
    redis_server: RedisServer, client: Client, queue: str, size: int, tmp_path: Path
) -> None:
    async with running_worker(make_listeners(), queue=queue, redis_url=redis_server.url, **SLOW):
        job_id = await client.post({"size": size, "as": "bytes"}, functions=["train"])
        with anyio.fail_after(30):
            assert await client.block_until_result(job_id) == weights(size)
    assert (await client.get_job(job_id)).result_bytes == size + 6


async def test_a_large_result_whose_chunks_are_gone_or_whose_reference_is_garbage_says_so(
    redis_server: RedisServer, client: Client, queue: str
) -> None:
    async with running_worker(make_listeners(), queue=queue, redis_url=redis_server.url, **SLOW):
        gone, garbage = [
            await client.post({"size": CHUNK_BYTES * 2, "as": "bytes"}, functions=["train"])
            for _ in range(2)
        ]
        with anyio.fail_after(30):
            for job_id in (gone, garbage):
                await client.block_until_result(job_id)
    store = client.store
    await store.redis.unlink(store.keys.blob(gone))  # as if expired before its record
    await store.redis.hset(store.keys.job(garbage), "result", b"\x02\xc1 not msgpack")
    with pytest.raises(JobNotFound):
        await client.get_result(gone)
    with pytest.raises(MessageError, match=r"result of job .* unreadable reference"):
        await client.get_result(garbage)
    assert (await client.get_job(garbage)).result_bytes is None  # the record stays readable
    async with http(redis_server.url, queue) as session:
        async with session.get(f"/jobs/{gone}/result.bin") as resp:
            assert resp.status == 404 and (await resp.json())["error"] == "job_not_found"
        async with session.get(f"/jobs/{garbage}/result") as resp:
            assert resp.status == 422 and "unreadable reference" in (await resp.json())["detail"]
        key = await client.store_data(weights(CHUNK_BYTES + 1))
        async with session.head(f"/data/{key}") as resp:  # the length, and no chunk read
            assert resp.status == 200 and resp.headers["Content-Length"] == str(CHUNK_BYTES + 1)

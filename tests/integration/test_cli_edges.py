"""What a user meets around the commands: output cut short by its reader, the help text,
settings checked before anything runs, log lines a machine reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from aqueue import Client, Context, Listeners
from aqueue.testing import RedisServer, running_worker

from ..processes import ROOT
from .test_cli import aqueue


async def test_output_cut_short_by_its_reader_ends_quietly(
    redis_server: RedisServer, queue: str
) -> None:
    """`aqueue dlq show ... | head` printed a BrokenPipeError traceback."""
    async with Client(queue, redis_url=redis_server.url) as client:
        job_id = await client.post({"x": 1})
    many = [job_id] * 2000  # far more than a pipe holds: the writer meets the closed end
    where = ["--redis-url", redis_server.url, "--queue", queue]
    reader, writer = os.pipe()  # a pipe of our own, to close as `head` does
    with anyio.fail_after(60):
        async with await anyio.open_process(
            [sys.executable, "-m", "aqueue", "dlq", "show", *many, *where],
            cwd=ROOT,
            stdout=writer,
            stderr=subprocess.PIPE,
        ) as process:
            os.close(writer)
            first = await anyio.to_thread.run_sync(os.read, reader, 100)
            os.close(reader)  # once it has its lines
            assert process.stderr is not None
            errors = b"".join([chunk async for chunk in process.stderr])
            code = await process.wait()
    assert first.startswith(b"id: " + job_id.encode())
    assert errors == b"", errors.decode(errors="replace")
    assert code == 141  # 128 + SIGPIPE, as the shell reports a command its reader left


GOOD_TOKEN = "r" * 16


async def test_check_validates_the_http_tokens_and_blames_a_bad_one_on_its_own_source(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """`aqueue check` passed a bad token, and the worker blamed it on "http_bind from the
    command line" when the bind came from there and the token from the file."""
    config = tmp_path / "gpu0.toml"
    head = f'redis_url = "{redis_server.url}"\n'
    config.write_text(head + f'http_read_tokens = ["{GOOD_TOKEN}"]\nhttp_write_tokens = "w"\n')
    blame = "an http write token is invalid: use at least 16 characters of letters, digits"
    for args in (["check"], ["worker", "tests.chaos.listeners:listeners", "--http", "[::1]:0"]):
        code, _, err = await aqueue(*args, "--config", str(config))
        assert code == 1 and blame in err and f"(http_write_tokens from {config})" in err, err
        assert "http_bind" not in err
    config.write_text(head + f'http_read_tokens = ["{GOOD_TOKEN}"]\n')
    code, out, err = await aqueue("check", "--config", str(config))
    assert code == 0, err
    assert "ok: http on 127.0.0.1:8080: 1 read-only and 0 read-write token(s)" in out


async def test_status_counts_a_worker_s_finished_jobs_at_once_not_at_its_next_heartbeat(
    redis_server: RedisServer, queue: str
) -> None:
    listeners = Listeners()

    @listeners.listener
    async def echo(msg: Any, ctx: Context) -> Any:
        return msg

    where = ["--redis-url", redis_server.url, "--queue", queue]
    async with Client(queue, redis_url=redis_server.url) as client:
        # its first heartbeat (done: 0) registers it; the next is a minute away
        async with running_worker(
            listeners, queue=queue, redis_url=redis_server.url, heartbeat=60.0, lease=180.0
        ) as worker:
            for job_id in await client.post_many([1, 2, 3]):
                assert await client.block_until_result(job_id, timeout=20) is not None
            code, out, err = await aqueue("status", "--json", *where)
            assert code == 0, err
            [report] = json.loads(out)["queues"]
            assert [(w["id"], w["processed"]) for w in report["workers"]] == [(worker.id, 3)]
            code, out, _ = await aqueue("status", *where)
            assert f"worker {worker.id} up" in out and ", 3 done;" in out

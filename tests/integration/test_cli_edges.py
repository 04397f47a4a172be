"""What a user meets around the commands: output cut short by its reader, the help text,
settings checked before anything runs, log lines a machine reads."""

from __future__ import annotations

import os
import subprocess
import sys

import anyio
import anyio.to_thread

from aqueue import Client
from aqueue.testing import RedisServer

from ..processes import ROOT


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

"""Listeners the chaos tests run in real `python -m aqueue worker` processes."""

from __future__ import annotations

import os
import signal
from typing import Any

import anyio

from aqueue import Context, Listeners

listeners = Listeners()


@listeners.listener
async def slow(msg: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Says it started, works for `seconds`, says it is finishing, returns who ran it."""
    await ctx.update_progress(f"attempt {ctx.attempt} started")
    await anyio.sleep(msg["seconds"])
    await ctx.update_progress(f"attempt {ctx.attempt} finishing")
    return {"attempt": ctx.attempt, "pid": os.getpid(), "n": msg.get("n")}


@listeners.listener
async def crash(msg: Any, ctx: Context) -> None:
    """Kills its own worker, as an OOM kill or a segfault would."""
    os.kill(os.getpid(), signal.SIGKILL)


@listeners.listener
async def record(msg: dict[str, Any], ctx: Context) -> str:
    """Appends its job id to the file `msg["log"]`: the side effect a test counts. One short
    O_APPEND write: whole lines, whichever worker process writes."""
    fd = os.open(msg["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{ctx.job_id}\n".encode())
    finally:
        os.close(fd)
    await anyio.sleep(msg.get("seconds", 0))
    return ctx.job_id


class Lifecycle:
    """A stateful handler that appends `setup`, each message, and `teardown` to the file
    AQUEUE_TEST_LIFECYCLE names (when set): what a test of SIGTERM reads back."""

    def _note(self, what: str) -> None:
        path = os.environ.get("AQUEUE_TEST_LIFECYCLE")
        if path:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            try:
                os.write(fd, f"{os.getpid()} {what}\n".encode())
            finally:
                os.close(fd)

    async def setup(self) -> None:
        self._note("setup")

    async def teardown(self) -> None:
        self._note("teardown")

    async def __call__(self, msg: Any, ctx: Context) -> Any:
        await ctx.update_progress("started")
        await anyio.sleep(0.3)
        self._note(f"ran {msg}")
        return msg


listeners.add(Lifecycle(), name="lifecycle")

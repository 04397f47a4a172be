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

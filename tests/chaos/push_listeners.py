"""Listeners for tests/chaos/test_push_prefetch_chaos.py, run in real worker processes."""

from __future__ import annotations

import os
from typing import Any

import anyio

from aqueue import Context, Listeners, SyncContext

listeners = Listeners()


@listeners.listener
async def nap(msg: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Sleeps `seconds` without a word to Redis, then says which attempt, on which pid, ran."""
    await anyio.sleep(msg["seconds"])
    return {"attempt": ctx.attempt, "pid": os.getpid(), "n": msg.get("n")}


@listeners.listener
async def parent(msg: dict[str, Any], ctx: Context) -> Any:
    """Posts a `nap` child job and awaits its result (lending its slot out meanwhile)."""
    child = await ctx.post(msg, functions=["nap"])
    await ctx.update_progress(child, "waiting on child")
    return await ctx.block_until_result(child)


@listeners.listener
def sync_parent(msg: int, ctx: SyncContext) -> int:
    """A plain-function parent: posts a plain-function child and blocks on its result."""
    child = ctx.post(msg, functions=["sync_child"])
    return int(ctx.block_until_result(child, timeout=3)) + 1


@listeners.listener
def sync_child(msg: int, ctx: SyncContext) -> int:
    return msg * 10

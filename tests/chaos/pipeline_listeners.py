"""A 3-stage pipeline for the chaos tests, one registry per stage (a worker serving a stage's
queue runs that stage's listener): `tests.chaos.pipeline_listeners:first` and so on. The
queues are named from AQUEUE_TEST_PIPELINE (`<name>-a`, `-b`, `-c`), set by the test."""

from __future__ import annotations

import os

import anyio

from aqueue import Context, Listeners

NAMES = os.environ.get("AQUEUE_TEST_PIPELINE", "pipeline").split(",")  # the three queues

first = Listeners()
second = Listeners()
third = Listeners()


@first.listener(outputs=[NAMES[1]] if len(NAMES) == 3 else [])
async def add_one(msg: int, ctx: Context) -> int:
    await anyio.sleep(0.02)  # some work to be killed in
    return msg + 1


@second.listener(outputs=[NAMES[2]] if len(NAMES) == 3 else [])
async def times_ten(msg: int, ctx: Context) -> int:
    await anyio.sleep(0.02)
    return msg * 10


@third.listener
async def keep(msg: int, ctx: Context) -> int:
    return msg

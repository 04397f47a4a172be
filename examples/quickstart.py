"""The quick start: a worker daemon runs ML-style listeners on jobs a client posts.

    python examples/quickstart.py

With no Redis configured it starts the embedded one (in ./.aqueue), starts a worker daemon
(`python -m aqueue worker quickstart:listeners`) as a separate process, posts jobs, prints their
progress and results as they are pushed, then stops the daemon with SIGTERM.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
from pathlib import Path

import anyio
from anyio.abc import Process

from aqueue import Client, Context, JobFailed, Listeners, Output, SyncContext

listeners = Listeners()


@listeners.listener
async def train(msg: dict[str, int], ctx: Context) -> Output:
    """A slow "training" job: reports progress each epoch, returns weights and a summary."""
    weights = hashlib.sha256(str(msg).encode()).digest()
    for epoch in range(1, msg["epochs"] + 1):
        await anyio.sleep(0.1)  # stands in for an epoch of real work
        await ctx.update_progress(round(100 * epoch / msg["epochs"]), f"epoch {epoch}")
    return Output(result=weights, short=f"trained {msg['epochs']} epochs")


@listeners.listener
def infer(msg: list[float], ctx: SyncContext) -> float:
    """A plain function: runs in the worker's thread pool, never blocking its event loop."""
    return sum(x * x for x in msg)


@listeners.listener
async def fragile(msg: str, ctx: Context) -> None:
    raise ValueError(f"cannot parse {msg!r}")


async def main(home: str) -> None:
    async with Client("quickstart") as client:  # no URL: the embedded Redis
        daemon = await anyio.open_process(
            [sys.executable, "-m", "aqueue", "worker", "quickstart:listeners",
             "--queue", "quickstart", "--concurrency", "8"],
            cwd=Path(__file__).parent,
            env={**os.environ, "AQUEUE_HOME": home},  # the same embedded Redis as ours
            stdout=None,
            stderr=None,
        )  # fmt: skip
        try:
            training = await client.post({"epochs": 5}, functions=["train"])
            inference = await client.post([1.0, 2.0, 3.0], functions=["infer"])
            broken = await client.post("garbage", functions=["fragile"], retry=0)
            print(f"posted jobs {training}, {inference}, {broken}")
            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_fail_if_exits, daemon)
                    await _show(client, training, inference, broken)
                    tg.cancel_scope.cancel()
        finally:
            daemon.send_signal(signal.SIGTERM)
            with anyio.fail_after(30):
                print(f"worker daemon exited with status {await daemon.wait()}")


async def _fail_if_exits(daemon: Process) -> None:
    status = await daemon.wait()
    raise SystemExit(f"the worker daemon exited early with status {status}")


async def _show(client: Client, training: str, inference: str, broken: str) -> None:
    async for event in client.watch(training):
        if event.progress:
            print(f"  train: {event.progress.value}% ({event.progress.message})")
        elif event.status:
            print(f"  train: {event.status}")
    weights = await client.block_until_result(training)
    job = await client.get_job(training)
    print(f"train -> {job.short_result!r}, {len(weights)} bytes of weights")
    print(f"infer -> {await client.block_until_result(inference)}")
    try:
        await client.block_until_result(broken)
    except JobFailed as failed:
        print(f"fragile -> {failed.status}: {failed.error_type}: {failed.error_message}")


if __name__ == "__main__":
    anyio.run(main, os.path.abspath(os.environ.get("AQUEUE_HOME", ".aqueue")))

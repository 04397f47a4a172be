"""Does the drain rate hold as the backlog grows? And Redis memory per queued job.

    .venv/bin/python benchmarks/backlog.py 10000 100000 1000000

Each backlog gets its own redis-server (no persistence), filled once with no-op jobs by bulk
posts. Then, in rounds, each backlog in turn (A B C A B C: the machine's slow and fast minutes
fall on all of them alike): its queue is topped up to the backlog again, one `aqueue worker`
process starts, and once it has done `--warmup` jobs, its next `--measure` completions are
timed, with Redis's CPU time (INFO) and the worker's (/proc) over the same window: where a
slower drain spends its time. Medians over the rounds are reported.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from aqueue import Client
from aqueue.testing import RedisServer
from benchmarks.peers._harness import tree_cpu

LISTENERS = """
from aqueue import Listeners

listeners = Listeners()


@listeners.listener
async def noop(msg, ctx):
    return None
"""

QUEUE = "backlog"
BATCH = 2000  # jobs per bulk post


@dataclass
class Backlog:
    size: int
    server: RedisServer
    completed: int = 0  # jobs short of the backlog: what the next top-up posts
    enqueue_per_s: float = 0.0
    memory_per_job: float = 0.0
    # per round: jobs/s, then Redis's and the worker's CPU per job (µs)
    rounds: list[tuple[float, float, float]] = field(default_factory=list)


async def fill(backlog: Backlog) -> None:
    """Post the whole backlog; its rate and Redis's memory per queued job."""
    async with Client(QUEUE, redis_url=backlog.server.url) as client:
        redis = client.store.redis
        before = (await redis.info("memory"))["used_memory"]
        started = time.perf_counter()
        await post(client, backlog.size)
        backlog.enqueue_per_s = backlog.size / (time.perf_counter() - started)
        used = (await redis.info("memory"))["used_memory"]
        backlog.memory_per_job = (used - before) / backlog.size


async def post(client: Client, count: int) -> None:
    for start in range(0, count, BATCH):
        await client.post_many([None] * min(BATCH, count - start), functions=["noop"])


async def redis_cpu(redis: Any) -> float:
    """Redis's CPU seconds so far, user + system."""
    info = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def one_round(backlog: Backlog, warmup: int, window: int, home: Path) -> None:
    async with Client(QUEUE, redis_url=backlog.server.url) as client:
        redis = client.store.redis
        stats = client.store.keys.stats
        await post(client, backlog.completed)  # back to the full backlog
        worker = subprocess.Popen(  # noqa: ASYNC220 - started once, outside the timing
            [sys.executable, "-m", "aqueue", "worker", "bench_listeners:listeners",
             "--queue", QUEUE, "--redis-url", backlog.server.url, "--log-level", "WARNING",
             "--no-callbacks"],
            cwd=home,
        )  # fmt: skip
        try:
            start = int(await redis.hget(stats, "complete") or 0) + warmup
            first = 0
            t0 = redis_cpu0 = worker_cpu0 = 0.0
            while True:  # measurement only: sample the completion counter
                done = int(await redis.hget(stats, "complete") or 0)
                if done >= start and not first:
                    first, t0 = done, time.perf_counter()
                    redis_cpu0, worker_cpu0 = await redis_cpu(redis), tree_cpu(worker.pid)
                if first and done >= first + window:
                    break
                await anyio.sleep(0.002)
            elapsed = time.perf_counter() - t0
            redis_us = 1e6 * (await redis_cpu(redis) - redis_cpu0) / (done - first)
            worker_us = 1e6 * (tree_cpu(worker.pid) - worker_cpu0) / (done - first)
            backlog.rounds.append(((done - first) / elapsed, redis_us, worker_us))
        finally:
            worker.send_signal(signal.SIGTERM)  # hands back the jobs it holds
            worker.wait(60)
        backlog.completed = backlog.size - await redis.zcard(client.store.keys.lane("noop"))


def report(backlog: Backlog) -> str:
    rate, redis_us, worker_us = (statistics.median(r[i] for r in backlog.rounds) for i in range(3))
    rates = " / ".join(f"{r[0]:,.0f} ({r[1]:.1f}, {r[2]:.1f} µs)" for r in backlog.rounds)
    return (
        f"backlog {backlog.size:>9,}: bulk enqueue {backlog.enqueue_per_s:>7,.0f}/s, "
        f"Redis memory {backlog.memory_per_job:,.0f} B per queued job; drain, median of "
        f"{len(backlog.rounds)}: {rate:>6,.0f} jobs/s, CPU per job: Redis {redis_us:.1f} µs, "
        f"worker {worker_us:.1f} µs; rounds (Redis, worker CPU per job): {rates}"
    )


async def run(args: argparse.Namespace, home: Path) -> None:
    backlogs = [
        Backlog(size, RedisServer(home / f"redis-{size}", appendonly=False).start())
        for size in args.backlogs
    ]
    try:
        for backlog in backlogs:
            await fill(backlog)
        for _ in range(args.rounds):
            for backlog in backlogs:
                await one_round(backlog, args.warmup, args.measure, home)
        for backlog in backlogs:
            print(report(backlog), flush=True)
    finally:
        for backlog in backlogs:
            backlog.server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("backlogs", type=int, nargs="+")
    parser.add_argument("--warmup", type=int, default=1000, help="completions before the timing")
    parser.add_argument("--measure", type=int, default=8000, help="completions to time")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if min(args.backlogs) < args.warmup + args.measure + 1000:
        parser.error("each backlog must outlast --warmup + --measure, with room to spare")
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        (home / "bench_listeners.py").write_text(LISTENERS)
        anyio.run(run, args, home)


if __name__ == "__main__":
    main()

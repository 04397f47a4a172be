"""The worker's own work per no-op job, counted in CPU instructions rather than timed.

    .venv/bin/python benchmarks/worker_cost.py [--small 2000] [--large 6000]

The worker's CPU per job from /proc swings with the machine as Redis's does (41 µs in one
hour, 74 µs in another, for the same code); an instruction count does not, so this is the
figure to compare two commits by (run it in each checkout: it measures the aqueue it imports).
It queues `--small` no-op jobs in a redis-server of its own (loopback, a free port, no
persistence), drains them with a burst worker (`aqueue.testing.run_until_idle`, at the default
concurrency and prefetch, on uvloop as the daemon runs) under valgrind's callgrind, then does
the same with `--large` jobs; the difference over the difference in jobs is the worker's
instructions per job, its start-up and imports cancelled out. PYTHONHASHSEED is fixed. The
figure still moves by a few per cent from run to run, with the sizes of the claim batches,
which follow the timing. Needs valgrind (Debian: apt-get install valgrind); about a minute.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import anyio

from aqueue import Client
from aqueue.testing import RedisServer

QUEUE = "worker-cost"

DRAIN = """
import sys, uvloop
from aqueue import Context, Listeners
from aqueue.testing import run_until_idle

listeners = Listeners()

@listeners.listener
async def noop(msg, ctx: Context) -> None:
    return None

uvloop.run(run_until_idle(listeners, queue=sys.argv[1], redis_url=sys.argv[2], callbacks=None))
"""


async def queue_jobs(url: str, count: int) -> None:
    async with Client(QUEUE, redis_url=url) as client:
        for start in range(0, count, 1000):
            await client.post_many([None] * min(1000, count - start), functions=["noop"])


def drain_instructions(url: str, out: Path) -> int:
    """Instructions the worker process ran, start to exit, draining the queue."""
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
         sys.executable, "-c", DRAIN, QUEUE, url],
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    for line in out.read_text().splitlines():
        if found := re.match(r"(?:summary|totals): (\d+)", line):
            return int(found.group(1))
    raise RuntimeError(f"callgrind wrote no total in {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--large", type=int, default=6000)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="aqueue-worker-cost-"))
    server = RedisServer(home / "redis", appendonly=False).start()
    try:
        totals = {}
        for count in (args.small, args.large):
            anyio.run(queue_jobs, server.url, count)
            totals[count] = drain_instructions(server.url, home / f"callgrind.{count}")
    finally:
        server.stop()
    per_job = (totals[args.large] - totals[args.small]) / (args.large - args.small)
    print(f"Worker instructions per no-op job ({args.small} vs {args.large} jobs, callgrind):")
    print(f"  drain                          {per_job / 1000:.1f}k")


if __name__ == "__main__":
    main()

"""Does the drain rate hold as the backlog grows? And Redis memory per queued job.

    .venv/bin/python benchmarks/backlog.py 10000 100000 1000000

For each backlog: bulk-enqueue that many no-op jobs into a fresh redis-server (no persistence),
then start one `aqueue worker` process and time its first `--measure` completions.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

from aqueue import Client
from aqueue.testing import RedisServer

LISTENERS = """
from aqueue import Listeners

listeners = Listeners()


@listeners.listener
async def noop(msg, ctx):
    return None
"""


async def measure(backlog: int, window: int, home: Path) -> str:
    server = RedisServer(home / f"redis-{backlog}", appendonly=False).start()
    try:
        async with Client("backlog", redis_url=server.url) as client:
            redis = client.store.redis
            before = (await redis.info("memory"))["used_memory"]
            started = time.perf_counter()
            for _ in range(0, backlog, 2000):
                await client.post_many([None] * 2000, functions=["noop"])
            enqueue = backlog / (time.perf_counter() - started)
            per_job = ((await redis.info("memory"))["used_memory"] - before) / backlog
            worker = subprocess.Popen(  # noqa: ASYNC220 - started once, outside the timing
                [sys.executable, "-m", "aqueue", "worker", "bench_listeners:listeners",
                 "--queue", "backlog", "--redis-url", server.url, "--log-level", "WARNING",
                 "--no-callbacks"],
                cwd=home,
            )  # fmt: skip
            try:
                first = 0
                t0 = 0.0
                while True:  # measurement only: sample the completion counter
                    done = int(await redis.hget(client.store.keys.stats, "complete") or 0)
                    if done and not first:
                        first, t0 = done, time.perf_counter()
                    if first and done >= min(first + window, backlog):
                        break
                    await anyio.sleep(0.01)
                rate = (done - first) / (time.perf_counter() - t0)
            finally:
                worker.send_signal(signal.SIGTERM)
                worker.wait(60)
    finally:
        server.stop()
    return (
        f"backlog {backlog:>9,}: bulk enqueue {enqueue:>7,.0f}/s, drain {rate:>6,.0f} jobs/s "
        f"(over {done - first:,}), Redis memory {per_job:,.0f} B per queued job"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("backlogs", type=int, nargs="+")
    parser.add_argument("--measure", type=int, default=60_000, help="completions to time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        (home / "bench_listeners.py").write_text(LISTENERS)
        for backlog in args.backlogs:
            print(anyio.run(measure, backlog, args.measure, home), flush=True)


if __name__ == "__main__":
    main()

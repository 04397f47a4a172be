"""Redis's own work per job, counted in CPU instructions rather than timed.

    .venv/bin/python benchmarks/redis_cost.py [--jobs 4000]

`used_cpu` from INFO swings with the machine (up to 2x between minutes on a small VM); an
instruction count is the same on every run, so it shows what a change to the scripts did.
It is not time, though: a scan of a packed list runs many instructions fast, a lookup that
misses the cache few slowly. Judge a change by both. This runs a redis-server (no
persistence, loopback, a free port) under valgrind's callgrind and drives the scripts the
way a worker does, one phase at a time:

  bulk post   post_many, 1,000 jobs a call
  run         Store.claim 64 jobs, Store.finish them (64 completions), and again (--batch)
  post        Client.post, one job a call, awaited (the app's usual call)

After each phase, `callgrind_control --dump` writes the instructions Redis ran in it; per job
is that total over the jobs. Needs valgrind (Debian: apt-get install valgrind). Under valgrind
Redis runs some 50x slower, so the default is a few thousand jobs.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

from aqueue import Client
from aqueue._codec import encode
from aqueue._server import find_redis_server, free_port, ping
from aqueue._store import Arg

QUEUE = "cost"


def start_under_callgrind(home: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = home / "redis.conf"
    conf.write_text(
        f'bind 127.0.0.1\nport {port}\ndir {home}\nappendonly no\nsave ""\n'
        f"logfile {home / 'redis.log'}\n"
    )
    process = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={home}/cg.out.%p",
         find_redis_server(), str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not ping("127.0.0.1", port, timeout=2):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"redis-server under valgrind did not start; see {home}/redis.log")
        time.sleep(0.2)
    return process, port


def dump(process: subprocess.Popen[bytes], home: Path, phase: str) -> int:
    """Instructions Redis ran since the last dump."""
    before = set(home.glob("cg.out.*"))
    subprocess.run(
        ["callgrind_control", f"--dump={phase}", str(process.pid)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        new = [p for p in set(home.glob("cg.out.*")) - before if p.stat().st_size > 0]
        if new:
            text = new[0].read_text(errors="replace")
            found = re.search(r"^(?:summary|totals): (\d+)", text, re.MULTILINE)
            if found:
                return int(found.group(1))
        if time.monotonic() > deadline:
            raise SystemExit(f"callgrind wrote no dump for {phase}")
        time.sleep(0.1)


def keep_dumps(home: Path, into: Path) -> None:
    into.mkdir(parents=True, exist_ok=True)
    for dumped in home.glob("cg.out.*"):
        shutil.copy(dumped, into)


async def drive(
    url: str, jobs: int, batch: int, phase_done: Callable[[str], Awaitable[None]]
) -> None:
    """Run the phases; `phase_done(name)` returns once Redis's count for it is taken."""
    async with Client(QUEUE, redis_url=url) as client:
        store = client.store
        await store.redis.ping()
        await phase_done("setup")
        for start in range(0, jobs, 1000):
            await client.post_many(range(start, min(jobs, start + 1000)), functions=["noop"])
        await phase_done("bulk post")
        # as a worker does: claim a batch, finish it, claim the next (so the queue-wide
        # `running` hash and `active` zset stay small, as they are in a real drain)
        result: list[Arg] = ["result", encode(None, "result")]
        done = 0
        while done < jobs:
            claim = await store.claim("w1", 60_000, batch, ["noop"])
            await store.finish("w1", [job.outcome("complete", 0, result) for job in claim.jobs])
            done += len(claim.jobs)
        await phase_done("run")
        for n in range(jobs):
            await client.post(n, functions=["noop"])
        await phase_done("post")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=64, help="jobs per claim and per finish")
    parser.add_argument(
        "--keep", type=Path, help="copy callgrind's dumps here (for callgrind_annotate)"
    )
    args = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("needs valgrind and callgrind_control (apt-get install valgrind)")
    with tempfile.TemporaryDirectory(prefix="aqueue-cost-") as tmp:
        home = Path(tmp)
        process, port = start_under_callgrind(home)
        rows: list[tuple[str, float]] = []

        async def phase_done(phase: str) -> None:
            total = await anyio.to_thread.run_sync(dump, process, home, phase)
            if phase != "setup":
                rows.append((phase, total / args.jobs))

        try:
            await drive(f"redis://127.0.0.1:{port}/0", args.jobs, args.batch, phase_done)
        finally:
            process.terminate()
            process.wait(30)
            if args.keep:
                await anyio.to_thread.run_sync(keep_dumps, home, args.keep)
    print(f"Redis instructions per job ({args.jobs} jobs, callgrind):")
    for phase, per_job in rows:
        print(f"  {phase:<28} {per_job / 1000:6.1f}k")
    bulk_run = sum(per_job for phase, per_job in rows if phase in ("bulk post", "run"))
    print(f"  {'bulk post + run':<28} {bulk_run / 1000:6.1f}k")


if __name__ == "__main__":
    sys.exit(anyio.run(main))

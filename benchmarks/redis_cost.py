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

    .venv/bin/python benchmarks/redis_cost.py --backlog 1000000 --cache-sim

`--backlog N` first queues N jobs in a plain redis-server, saved to disk and loaded by the one
under callgrind (its loading is not counted): the run then takes the oldest of a big queue, as a
worker behind a backlog does. `--junk-lanes N` likewise first posts one job to each of N lanes
that no worker serves (N distinct unknown listener names): a claim should cost the same.
`--cache-sim` adds callgrind's model of the CPU's caches (this machine's sizes, as valgrind reads
them) and reports the data reads and writes per job that miss the last-level cache: each of
those waits on memory, which an instruction count does not show.

    .venv/bin/python benchmarks/redis_cost.py --cluster

`--cluster` runs the server in cluster mode, one node holding every slot, and drives it through a
redis+cluster:// URL: what a cluster's master does more per job than a plain server (checking
the slot of each key a script touches, keeping its keys indexed by slot), and nothing else. Run
it beside a plain run to compare.

    .venv/bin/python benchmarks/redis_cost.py --hops

`--hops` then drives a pipeline's hop, from queue cost-a to cost-b, after the plain phases (so
that both are counted in the same run), as its stages' daemons make it:

  run, with outputs   Store.claim 64 jobs of cost-a, Store.finish them with one output each
                      to cost-b (`pack_outputs`, as a listener with outputs=["cost-b"] does)
  forward             Forwarder.forward_once until the outbox is empty: claim_forwards 64 at
                      a time, one post to cost-b per job, forward_done per 64
  run of the outputs  Store.claim and Store.finish of cost-b's jobs, 64 at a time

A hop is what getting a job's output into the next stage and running it there costs beyond
running the job: (run, with outputs - run) + forward + run of the outputs. It is set beside a
plain job's post + run (a single awaited post, as the forwarder's are) and bulk post + run.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

import anyio
import msgpack
import redis

from aqueue import Client
from aqueue._codec import decode, encode
from aqueue._redis import scripts as _scripts
from aqueue._redis.calls import pack_outputs, unpack_outputs
from aqueue._redis.records import SpecShape, pack_forwarded
from aqueue._redis.server import find_redis_server, free_port, ping
from aqueue._redis.store import Store
from aqueue._services import forwarder as _forwarder
from aqueue._services.forwarder import Forwarder
from aqueue._states import Event
from aqueue.testing import RedisServer

QUEUE = "cost"
HOP_FROM, HOP_TO = "cost-a", "cost-b"  # the hop's two stages (--hops)
PARTS_FROM, PARTS_TO = "cost-c", "cost-d"  # the same again, its forwarding in parts


def start_under_callgrind(
    home: Path, cache_sim: bool, cluster: bool = False
) -> tuple[subprocess.Popen[bytes], int]:
    """The server, answering; with `cluster`, a cluster of this one node, holding every slot."""
    port = free_port()
    conf = home / "redis.conf"
    text = (
        f'bind 127.0.0.1\nport {port}\ndir {home}\nappendonly no\nsave ""\n'
        f"logfile {home / 'redis.log'}\n"
    )
    if cluster:
        text += f"cluster-enabled yes\ncluster-config-file nodes.conf\ncluster-port {free_port()}\n"
    conf.write_text(text)
    process = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={home}/cg.out.%p",
         f"--cache-sim={'yes' if cache_sim else 'no'}", find_redis_server(), str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 1800  # loading a backlog under valgrind takes minutes
    while not ping("127.0.0.1", port, timeout=2):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"redis-server under valgrind did not start; see {home}/redis.log")
        time.sleep(0.2)
    if cluster:
        with redis.Redis(port=port, socket_timeout=30, decode_responses=True) as node:
            node.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
            while "cluster_state:ok" not in node.execute_command("CLUSTER", "INFO"):
                if time.monotonic() > deadline:
                    raise SystemExit(f"the one-node cluster did not come up; see {home}/redis.log")
                time.sleep(0.2)
    return process, port


def dump(process: subprocess.Popen[bytes], home: Path, phase: str) -> dict[str, int]:
    """Redis's counts since the last dump, by event: Ir (instructions), and with the cache
    model DLmr and DLmw (data reads and writes that missed the last-level cache), and more."""
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
            events = re.search(r"^events: (.+)$", text, re.MULTILINE)
            found = re.search(r"^(?:summary|totals): ([\d ]+)$", text, re.MULTILINE)
            if events and found:
                # trailing zeros may be left off: those events count 0
                counts = map(int, found.group(1).split())
                return dict(zip(events.group(1).split(), counts, strict=False))
        if time.monotonic() > deadline:
            raise SystemExit(f"callgrind wrote no dump for {phase}")
        time.sleep(0.1)


async def post_to_lanes(store: Store, signatures: Iterable[str]) -> None:
    """One job for each lane of `signatures`, each a post.lua call of its own as many clients
    would make them (none refused: no bound on lanes no worker serves), a thousand calls a
    round trip."""
    sha = await store.redis.script_load(_scripts.source("post"))  # EVALSHA needs it loaded
    lanes = iter(signatures)
    while chunk := list(itertools.islice(lanes, 1000)):
        async with store.redis.pipeline(transaction=False) as pipe:
            for lane in chunk:
                spec = SpecShape(lane, 0, 1, b"", 60, "").pack(encode(None))
                # the batch as Store.post packs it: lane, priority, delay, at, watched,
                # fields, then the job's id, key and spec
                batch = [lane, 0, 0, 0, 0, [], os.urandom(16).hex(), "", spec]
                packed = msgpack.packb(batch, use_bin_type=False)  # Lua's cmsgpack has no bin
                pipe.evalsha(sha, 1, store.keys.stats, store.keys.prefix, 60_000, packed, 2**40)
            await pipe.execute()


async def queue_backlog(home: Path, jobs: int, junk_lanes: int = 0) -> None:
    """`jobs` queued no-op jobs, and one job in each of `junk_lanes` lanes no worker serves,
    in `home/dump.rdb`, for the server under callgrind to load."""
    server = RedisServer(home, appendonly=False).start()
    try:
        async with Client(QUEUE, redis_url=server.url) as client:
            # the worker that drives the run is live all along (it lists the lanes it serves
            # as they come, not all 50,000 at its first beat: under valgrind, that is seconds)
            await client.store.heartbeat("w1", 3_600_000, b"\x80", [], ["noop"])
            for start in range(0, jobs, 2000):
                await client.post_many([None] * min(2000, jobs - start), functions=["noop"])
            await post_to_lanes(client.store, (f"junk-{i}" for i in range(junk_lanes)))
            await client.store.redis.save()
    finally:
        server.stop()


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
        # the worker's first heartbeat lists its kind as live (with --junk-lanes, it also
        # finds the lanes it serves among all): posts to its lanes are then never refused
        await store.heartbeat("w1", 60_000, b"\x80", [], ["noop"])
        await phase_done("setup")
        for start in range(0, jobs, 1000):
            await client.post_many(range(start, min(jobs, start + 1000)), functions=["noop"])
        await phase_done("bulk post")
        # as a worker does: claim a batch, finish it, claim the next (so the queue-wide
        # `running` hash and `active` zset stay small, as they are in a real drain)
        result: list[str | bytes] = ["result", encode(None, "result")]
        done = 0
        while done < jobs:
            claim = await store.claim("w1", 60_000, batch, ["noop"])
            await store.finish("w1", [job.outcome(Event.COMPLETE, 0, result) for job in claim.jobs])
            done += len(claim.jobs)
        await phase_done("run")
        for n in range(jobs):
            await client.post(n, functions=["noop"])
        await phase_done("post")


async def run_queue(
    store: Store, worker_id: str, jobs: int, batch: int, outputs_to: str | None = None
) -> None:
    """Claim and finish `jobs` jobs of `store`'s queue, `batch` at a time, as a worker does; with
    `outputs_to`, each completion carries its message as an output to that queue, as a
    listener with `outputs=[outputs_to]` returning its message makes it."""
    done = 0
    while done < jobs:
        claim = await store.claim(worker_id, 60_000, batch, ["noop"])
        if not claim.jobs:
            raise SystemExit(f"{store.keys.queue}: {jobs - done} of {jobs} jobs are missing")
        outcomes = []
        for job in claim.jobs:
            value = decode(job.msg, "message") if outputs_to else None
            encoded = encode(value, "result")
            outputs = pack_outputs([(outputs_to, [encode(value)])]) if outputs_to else b""
            outcomes.append(job.outcome(Event.COMPLETE, 0, ["result", encoded], outputs=outputs))
        if not all(await store.finish(worker_id, outcomes)):
            raise SystemExit(f"{store.keys.queue}: a completion was refused")
        done += len(claim.jobs)


async def drive_hops(
    url: str, jobs: int, batch: int, phase_done: Callable[[str], Awaitable[None]]
) -> None:
    """A hop from HOP_FROM to HOP_TO (see --hops): its three phases; then another, from
    PARTS_FROM to PARTS_TO, whose forwarding is counted in its three parts."""
    async with Client(HOP_FROM, redis_url=url) as client:
        source = await stage_input(client, HOP_TO, jobs, batch, phase_done, "run, with outputs")
        forwarder = Forwarder(source, client.config)
        while await forwarder.forward_once() == 0:  # 0: it took a full batch, more may wait
            pass
        await phase_done("forward")
        await run_queue(source.view(HOP_TO), "w2", jobs, batch)
        await phase_done("run of the outputs")
    async with Client(PARTS_FROM, redis_url=url) as client:
        source = await stage_input(client, PARTS_TO, jobs, batch, phase_done, "setup")
        await forward_in_parts(Forwarder(source, client.config), phase_done)


async def stage_input(
    client: Client,
    target: str,
    jobs: int,
    batch: int,
    phase_done: Callable[[str], Awaitable[None]],
    phase: str,
) -> Store:
    """`jobs` jobs posted to `client`'s queue and run (counted as `phase`), each completion
    with an output to `target`: the store of that queue."""
    source = client.store
    # a daemon serves each stage: the outputs' lane is served, never refused
    await source.heartbeat("w1", 60_000, b"\x80", [], ["noop"])
    await source.view(target).heartbeat("w2", 60_000, b"\x80", [], ["noop"])
    for start in range(0, jobs, 1000):
        await client.post_many(range(start, min(jobs, start + 1000)), functions=["noop"])
    await phase_done("setup")  # not a hop's: stage 1's input, posted as in `bulk post`
    await run_queue(source, "w1", jobs, batch, outputs_to=target)
    await phase_done(phase)
    return source


async def forward_in_parts(
    forwarder: Forwarder, phase_done: Callable[[str], Awaitable[None]]
) -> None:
    """What Forwarder.forward_once does, one step at a time over every job: all the claims
    (claim_forwards), all the posts, all the let-gos (forward_done), each counted alone. The
    leases held then grow to every job, not a batch: their zset's lookups cost a little more."""
    store, claimed = forwarder.store, []
    while True:
        _, taken = await store.claim_forwards(int(_forwarder.LEASE_S * 1000), _forwarder.BATCH)
        claimed += taken
        if len(taken) < _forwarder.BATCH:
            break
    await phase_done("forward: claim_forwards")
    done = []
    for job_id, packed, root in claimed:
        outputs = unpack_outputs(packed)
        for target, messages, tag in outputs:
            await forwarder._post(job_id, root or job_id, target, messages, tag)
        done.append((job_id, pack_forwarded([(t, len(m), tag) for t, m, tag in outputs])))
    await phase_done("forward: posts")
    for start in range(0, len(done), _forwarder.BATCH):
        await store.forward_done(done[start : start + _forwarder.BATCH])
    await phase_done("forward: forward_done")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=64, help="jobs per claim and per finish")
    parser.add_argument(
        "--keep", type=Path, help="copy callgrind's dumps here (for callgrind_annotate)"
    )
    parser.add_argument("--backlog", type=int, default=0, help="jobs queued before it starts")
    parser.add_argument(
        "--junk-lanes", type=int, default=0, help="lanes no worker serves, made before it starts"
    )
    parser.add_argument(
        "--cache-sim", action="store_true", help="count last-level cache misses too (slower)"
    )
    parser.add_argument(
        "--cluster", action="store_true", help="the server in cluster mode, one node, every slot"
    )
    parser.add_argument(
        "--hops", action="store_true", help="then a pipeline's hop: outputs, forward, their run"
    )
    args = parser.parse_args()
    if args.cluster and (args.backlog or args.junk_lanes):
        parser.error("--cluster starts from an empty node: no --backlog or --junk-lanes")
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("needs valgrind and callgrind_control (apt-get install valgrind)")
    with tempfile.TemporaryDirectory(prefix="aqueue-cost-") as tmp:
        home = Path(tmp)
        if args.backlog or args.junk_lanes:
            await queue_backlog(home, args.backlog, args.junk_lanes)
        process, port = start_under_callgrind(home, args.cache_sim, args.cluster)
        rows: list[tuple[str, dict[str, int]]] = []

        async def phase_done(phase: str) -> None:
            counts = await anyio.to_thread.run_sync(dump, process, home, phase)
            if phase != "setup":
                rows.append((phase, counts))

        try:
            url = (
                f"redis+cluster://127.0.0.1:{port}"
                if args.cluster
                else f"redis://127.0.0.1:{port}/0"
            )
            await drive(url, args.jobs, args.batch, phase_done)
            if args.hops:
                await drive_hops(url, args.jobs, args.batch, phase_done)
        finally:
            process.terminate()
            process.wait(30)
            if args.keep:
                await anyio.to_thread.run_sync(keep_dumps, home, args.keep)
    behind = f", behind a backlog of {args.backlog:,}" if args.backlog else ""
    if args.junk_lanes:
        behind += f", {args.junk_lanes:,} lanes no worker serves"
    if args.cluster:
        behind += ", a one-node cluster"
    print(f"Redis instructions per job ({args.jobs} jobs{behind}, callgrind):")
    for phase, counts in rows:
        if phase.startswith("forward: "):
            continue  # printed with the hop
        line = f"  {phase:<28} {counts['Ir'] / args.jobs / 1000:6.1f}k"
        if args.cache_sim:
            misses = (counts.get("DLmr", 0) + counts.get("DLmw", 0)) / args.jobs
            line += f"   last-level cache misses {misses:5.1f}"
        print(line)
    per = {phase: counts["Ir"] / args.jobs for phase, counts in rows}
    bulk_run, post_run = per["bulk post"] + per["run"], per["post"] + per["run"]
    print(f"  {'bulk post + run':<28} {bulk_run / 1000:6.1f}k")
    print(f"  {'post + run':<28} {post_run / 1000:6.1f}k")
    if args.hops:
        outputs = per["run, with outputs"] - per["run"]
        hop = outputs + per["forward"] + per["run of the outputs"]
        print(
            f"  {'hop':<28} {hop / 1000:6.1f}k   = outputs at finish {outputs / 1000:.1f}k"
            f" + forward {per['forward'] / 1000:.1f}k"
            f" + run of the outputs {per['run of the outputs'] / 1000:.1f}k"
        )
        parts = {
            p.removeprefix("forward: "): v for p, v in per.items() if p.startswith("forward: ")
        }
        print(
            f"  {'forward, in parts':<28} {sum(parts.values()) / 1000:6.1f}k   = "
            + " + ".join(f"{name} {value / 1000:.1f}k" for name, value in parts.items())
        )
        print(f"  {'hop / (post + run)':<28} {hop / post_run:6.2f}x")
        print(f"  {'hop / (bulk post + run)':<28} {hop / bulk_run:6.2f}x")


if __name__ == "__main__":
    sys.exit(anyio.run(main))

"""One Redis against a Redis Cluster, side by side in one run: what a job costs Redis, how
queues spread over the cluster's masters, and how long an awaited post and a round trip take.

    .venv/bin/python benchmarks/cluster.py [--jobs 4000] [--trips 1000] [--rounds 5]

It starts its own servers on free loopback ports, none persisting (no AOF, no snapshots): a
standalone master with one replica, and the suite's cluster (tests/topologies.py: 3 masters
holding a third of the slots each, a replica each). Both have a replica per master, so both
feed a replication stream and both take durable posts. One machine runs them all, so a cluster
cannot beat one node here: what it measures is what scales, the cost of a job to the master
that holds its queue, and what the cluster adds to each call.

1. Cost per job, in rounds (standalone, cluster; then cluster, standalone; ...), each phase of
   `--jobs` jobs driven as benchmarks/redis_cost.py drives them: bulk post (post_many, 1,000 a
   call), run (Store.claim 64, Store.finish them: a worker's script calls, without its
   process), single awaited posts. Per phase, from INFO over every master, before and after:
   commands (commandstats `calls`, summed; less INFO, the measurer's own; a script's own
   commands count, as Redis counts them), script calls (EVALSHA), Redis CPU (used_cpu_user +
   used_cpu_sys; noisy: the machine's other load and the idle masters' timers show in it); and
   on the client's side its writes to Redis (each a round trip), counted in redis-py's
   connection class (the direct connection's too).
2. Spread: the master of each of 30 queues named q-0..q-29, and of 30 named as apps name them,
   as aqueue routes them (Store.node), checked against the server's CLUSTER KEYSLOT and SLOTS.
3. Latency, in rounds alternating the topologies as above: an awaited Client.post; the same
   with durable=True (WAIT 1 after it, on the same connection); and post + block_until_result
   on an idle `aqueue worker` (a process of its own) serving the queue: p50, p90, p99.

Writes the figures as JSON, and the table it prints as markdown, into --out
(benchmarks/results/ by default), as cluster-<UTC timestamp>.json and .md.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's aqueue (the venv's may be another's), tests/

import anyio  # noqa: E402
import redis  # noqa: E402
from redis.asyncio.connection import AbstractConnection  # noqa: E402
from redis.crc import key_slot  # noqa: E402

from aqueue import Client, Context, Listeners  # noqa: E402
from aqueue._codec import encode  # noqa: E402
from aqueue._redis.keys import Keys  # noqa: E402
from aqueue._states import Event  # noqa: E402
from aqueue.testing import RedisServer, until  # noqa: E402
from benchmarks.run import aqueue_revision, machine  # noqa: E402
from tests.topologies import FAST_SYNC, Cluster  # noqa: E402

COST_QUEUE = "cost"  # no worker: the phases drive its scripts
TRIP_QUEUE = "trip"  # an `aqueue worker` serves it
NUMBERED = [f"q-{i}" for i in range(30)]
# as apps name theirs: by what the jobs do, by resource, by urgency
NAMED = [
    "default", "emails", "email-digest", "notifications", "sms", "push", "webhooks",
    "billing", "invoices", "payments", "reports", "exports", "imports", "thumbnails",
    "images", "video", "transcode", "search-index", "analytics", "etl", "ml-train",
    "ml-infer", "gpu", "cpu", "high", "low", "critical", "batch", "cleanup", "sync",
]  # fmt: skip
PHASES = ("bulk post", "run", "post")

listeners = Listeners()  # the worker's (python -m aqueue worker benchmarks.cluster:listeners)


@listeners.listener
async def noop(msg: Any, ctx: Context) -> None:
    return None


# -- the servers --------------------------------------------------------------------------


@dataclass
class Topology:
    name: str
    url: str
    masters: list[RedisServer]
    stop: Callable[[], None]
    admins: list[redis.Redis] = field(default_factory=list)  # one per master: INFO, not counted

    def __post_init__(self) -> None:
        self.admins = [redis.Redis(port=m.port, decode_responses=True) for m in self.masters]


def standalone(home: Path) -> Topology:
    """A master and one replica, in sync."""
    master = RedisServer(home / "master", appendonly=False, extra=dict(FAST_SYNC)).start()
    replica = RedisServer(
        home / "replica",
        appendonly=False,
        extra={**FAST_SYNC, "replicaof": f"127.0.0.1 {master.port}"},
    ).start()
    with redis.Redis(port=master.port, decode_responses=True) as r:
        deadline = time.monotonic() + 20
        while r.info("replication").get("slave0", {}).get("state") != "online":
            if time.monotonic() > deadline:
                raise SystemExit("the standalone replica did not come in sync")
            time.sleep(0.02)

    def stop() -> None:
        replica.stop()
        master.stop()

    return Topology("standalone", master.url, [master], stop)


def cluster(home: Path) -> Topology:
    nodes = Cluster(home / "cluster").start()
    return Topology("cluster", nodes.url, nodes.masters, nodes.stop)


# -- what it reads --------------------------------------------------------------------------


class Writes:
    """The client's writes to Redis: every command, pipeline or script call redis-py sends
    (and the direct connection's) is one send_packed_command, answered before the next."""

    count = 0

    @classmethod
    def install(cls) -> None:
        original = AbstractConnection.send_packed_command

        async def counted(
            self: AbstractConnection, command: Any, check_health: bool = True
        ) -> None:
            cls.count += 1
            await original(self, command, check_health)

        AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]


@dataclass(frozen=True)
class Reading:
    calls: Counter[str]  # by command, summed over the masters
    cpu: tuple[float, ...]  # per master, user + system seconds
    connections: int  # connections the masters accepted, ever
    writes: int  # the client's
    at: float

    @classmethod
    def now(cls, topology: Topology) -> Reading:
        calls: Counter[str] = Counter()
        cpu = []
        connections = 0
        for admin in topology.admins:
            info = admin.info("all")
            for key, value in info.items():
                if key.startswith("cmdstat_"):
                    calls[key.removeprefix("cmdstat_")] += int(value["calls"])
            cpu.append(float(info["used_cpu_user"]) + float(info["used_cpu_sys"]))
            connections += int(info["total_connections_received"])
        return cls(calls, tuple(cpu), connections, Writes.count, time.perf_counter())


def delta(before: Reading, after: Reading, jobs: int, home: int) -> dict[str, Any]:
    """Per job, between two readings; `home` is the index of the queue's master."""
    calls = after.calls - before.calls
    del calls["info"]  # the readings' own
    cpu = [a - b for a, b in zip(after.cpu, before.cpu, strict=True)]
    return {
        "commands": calls.total() / jobs,
        "script_calls": calls["evalsha"] / jobs,
        "client_writes": (after.writes - before.writes) / jobs,
        "connections_opened": (after.connections - before.connections) / jobs,
        "redis_cpu_us": 1e6 * sum(cpu) / jobs,  # over every master
        "redis_cpu_us_queue_master": 1e6 * cpu[home] / jobs,
        "seconds": after.at - before.at,
        "by_command": dict(sorted(calls.items())),
    }


@contextlib.contextmanager
def measured(
    topology: Topology, jobs: int, home: int, into: list[dict[str, Any]]
) -> Iterator[None]:
    before = Reading.now(topology)
    yield
    into.append(delta(before, Reading.now(topology), jobs, home))


async def home_of(client: Client, topology: Topology) -> int:
    """The index of the master that holds the client's queue."""
    node = await client.store.node()
    return [f"127.0.0.1:{m.port}" for m in topology.masters].index(node)


# -- 1. cost per job -------------------------------------------------------------------------


async def cost_round(topology: Topology, jobs: int, batch: int) -> dict[str, dict[str, Any]]:
    """The three phases once, on a fresh client (the slot map and the scripts loaded first)."""
    found: dict[str, list[dict[str, Any]]] = {phase: [] for phase in PHASES}
    async with Client(COST_QUEUE, redis_url=topology.url) as client:
        store = client.store
        home = await home_of(client, topology)
        # the first heartbeat lists the kind "noop" as live: posts to it are then served
        await store.heartbeat("w1", 600_000, b"\x80", [], ["noop"])
        result: list[str | bytes] = ["result", encode(None, "result")]

        async def drain(count: int) -> None:  # as a worker does: claim a batch, finish it
            done = 0
            while done < count:
                claim = await store.claim("w1", 600_000, batch, ["noop"])
                outcomes = [job.outcome(Event.COMPLETE, 0, result) for job in claim.jobs]
                await store.finish("w1", outcomes)
                done += len(claim.jobs)

        # warm: the direct connection made, every script loaded
        await client.post_many([None] * 10, functions=["noop"])
        await client.post(None, functions=["noop"])
        await drain(11)
        with measured(topology, jobs, home, found["bulk post"]):
            for start in range(0, jobs, 1000):
                await client.post_many([None] * min(1000, jobs - start), functions=["noop"])
        with measured(topology, jobs, home, found["run"]):
            await drain(jobs)
        with measured(topology, jobs, home, found["post"]):
            for _ in range(jobs):
                await client.post(None, functions=["noop"])
        await client.purge()
    return {phase: rows[0] for phase, rows in found.items()}


# -- 2. spread -------------------------------------------------------------------------------


def slot_owners(admin: redis.Redis) -> list[tuple[int, int, int]]:
    """(first slot, last slot, master's port) of every range, as the server has them."""
    execute: Any = admin.execute_command  # (untyped in redis-py)
    ranges = execute("CLUSTER", "SLOTS")
    return [(int(r[0]), int(r[1]), int(r[2][1])) for r in ranges]


def owner(owners: list[tuple[int, int, int]], slot: int) -> int:
    return next(port for first, last, port in owners if first <= slot <= last)


async def spread(topology: Topology) -> dict[str, Any]:
    admin = topology.admins[0]
    owners = slot_owners(admin)
    ports = [m.port for m in topology.masters]
    found: dict[str, Any] = {}
    execute: Any = admin.execute_command
    async with Client(COST_QUEUE, redis_url=topology.url) as client:
        for label, names in (("q-0..q-29", NUMBERED), ("named", NAMED)):
            per_master = Counter({port: 0 for port in ports})
            where = {}
            for name in names:
                routed = await client.store.view(name).node()  # as aqueue routes it
                slot = int(execute("CLUSTER", "KEYSLOT", Keys(name).stats))
                port = owner(owners, slot)
                if routed != f"127.0.0.1:{port}":
                    raise SystemExit(f"{name}: aqueue routes it to {routed}, its slot is on {port}")
                per_master[port] += 1
                where[name] = ports.index(port)
            found[label] = {"per_master": [per_master[p] for p in ports], "master_of": where}
    for size in (300, 3000):  # more names, from the slot table: is the lumpiness only chance?
        per_master = Counter(
            owner(owners, key_slot(Keys(f"q-{i}").stats.encode())) for i in range(size)
        )
        found[f"q-0..q-{size - 1}"] = {"per_master": [per_master[p] for p in ports]}
    for entry in found.values():
        counts = entry["per_master"]
        mean = sum(counts) / len(counts)
        entry["worst_off_mean_pct"] = round(100 * max(abs(c - mean) for c in counts) / mean, 1)
    return found


# -- 3. latency ------------------------------------------------------------------------------


async def timed(calls: int, call: Callable[[], Awaitable[object]]) -> list[float]:
    took = []
    for _ in range(calls):
        start = time.perf_counter()
        await call()
        took.append(time.perf_counter() - start)
    return took


def start_worker(topology: Topology, home: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "aqueue", "worker", "benchmarks.cluster:listeners",
            "--queue", TRIP_QUEUE, "--redis-url", topology.url, "--log-level", "WARNING",
            "--no-callbacks"]  # fmt: skip
    with (home / f"worker-{topology.name}.log").open("wb") as log:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


@dataclass
class Faces:
    """A topology's two clients: one posting to the queue no worker serves, one making round
    trips through the worker's queue."""

    topology: Topology
    posts: Client
    trips: Client


async def latency_round(
    faces: Faces, calls: int, flip: bool
) -> dict[str, tuple[list[float], dict[str, Any]]]:
    """Each kind of call `calls` times in a row: its durations, and what they cost per call."""
    topology, posts, trips = faces.topology, faces.posts, faces.trips
    home = await home_of(posts, topology)
    found: dict[str, tuple[list[float], dict[str, Any]]] = {}

    async def post() -> None:
        await posts.post(None, functions=["noop"])

    async def durable() -> None:
        await posts.post(None, functions=["noop"], durable=True)

    async def trip() -> None:
        job_id = await trips.post(None, functions=["noop"])
        await trips.block_until_result(job_id, timeout=10)

    kinds: list[tuple[str, int, Callable[[], Awaitable[list[float]]]]] = [
        ("post", calls, lambda: timed(calls, post)),
        ("post durable", calls, lambda: timed(calls, durable)),
        ("post + result", calls, lambda: timed(calls, trip)),
    ]
    if flip:
        kinds[0], kinds[1] = kinds[1], kinds[0]
    for kind, count, make in kinds:
        cost: list[dict[str, Any]] = []
        with measured(topology, count, home, cost):
            took = await make()
        found[kind] = (took, cost[0])
    await posts.purge()
    return found


def quantile_us(values: list[float], q: int) -> float:
    return round(statistics.quantiles(values, n=100)[q - 1] * 1e6, 1)


async def _has_worker(client: Client) -> bool:
    return (await client.counts())["workers"] >= 1


async def latency(
    topologies: list[Topology], home: Path, calls: int, rounds: int
) -> dict[str, dict[str, Any]]:
    samples: dict[str, dict[str, list[float]]] = {t.name: {} for t in topologies}
    costs: dict[str, dict[str, list[dict[str, Any]]]] = {t.name: {} for t in topologies}
    workers = [start_worker(t, home) for t in topologies]
    try:
        async with contextlib.AsyncExitStack() as stack:
            faces = []
            for t in topologies:
                posts = await stack.enter_async_context(Client(COST_QUEUE, redis_url=t.url))
                trips = await stack.enter_async_context(Client(TRIP_QUEUE, redis_url=t.url))
                await posts.store.heartbeat("w1", 600_000, b"\x80", [], ["noop"])
                await until(functools.partial(_has_worker, trips), 60, what=f"{t.name} worker")
                faces.append(Faces(t, posts, trips))
            for face in faces:  # warm: connections made, scripts loaded, the worker idle
                await latency_round(face, 100, False)
            for r in range(rounds):
                for face in faces if r % 2 == 0 else faces[::-1]:
                    for kind, (took, cost) in (
                        await latency_round(face, calls, r % 2 == 1)
                    ).items():
                        samples[face.topology.name].setdefault(kind, []).extend(took)
                        costs[face.topology.name].setdefault(kind, []).append(cost)
                    print(f"latency round {r + 1}: {face.topology.name}", file=sys.stderr)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(60)
    return {
        name: {
            kind: {
                "calls": len(took),
                "p50_us": quantile_us(took, 50),
                "p90_us": quantile_us(took, 90),
                "p99_us": quantile_us(took, 99),
                "per_call": medians(costs[name][kind]),
                "rounds": costs[name][kind],
            }
            for kind, took in by_kind.items()
        }
        for name, by_kind in samples.items()
    }


# -- the run and its report ------------------------------------------------------------------

FIGURES = (
    "commands",
    "script_calls",
    "client_writes",
    "connections_opened",
    "redis_cpu_us",
    "redis_cpu_us_queue_master",
)


def medians(rows: list[dict[str, Any]]) -> dict[str, float]:
    return {f: round(statistics.median(row[f] for row in rows), 3) for f in FIGURES}


async def cost(topologies: list[Topology], jobs: int, batch: int, rounds: int) -> dict[str, Any]:
    found: dict[str, dict[str, list[dict[str, Any]]]] = {
        t.name: {phase: [] for phase in PHASES} for t in topologies
    }
    for r in range(rounds):
        for topology in topologies if r % 2 == 0 else topologies[::-1]:
            for phase, row in (await cost_round(topology, jobs, batch)).items():
                found[topology.name][phase].append(row)
            print(f"cost round {r + 1}: {topology.name}", file=sys.stderr)
    summary: dict[str, Any] = {}
    for name, phases in found.items():
        per_phase = {phase: medians(rows) for phase, rows in phases.items()}
        for combined, parts in (
            ("bulk post + run", ("bulk post", "run")),
            ("post + run", ("post", "run")),
        ):
            per_phase[combined] = {
                f: round(sum(per_phase[p][f] for p in parts), 3) for f in FIGURES
            }
        summary[name] = {"medians": per_phase, "rounds": phases}
    return summary


def ratio(cluster_value: float, standalone_value: float) -> str:
    return f"{cluster_value / standalone_value:.2f}x" if standalone_value else "-"


def markdown(found: dict[str, Any]) -> str:
    run = found["run"]
    lines = [
        "# One Redis vs a Redis Cluster (`benchmarks/cluster.py`)",
        "",
        f"{run['date']}, on {run['machine_label']} ({run['machine']['cpu']}, "
        f"{run['machine']['cores']} cores, {run['machine']['memory_gib']} GiB), Redis "
        f"{run['redis']}, redis-py {run['redis_py']}, aqueue {run['aqueue']['commit']}; "
        f"`{run['command']}`. Every server on loopback, no persistence, one replica per master; "
        "the cluster is 3 masters (a third of the slots each) and 3 replicas on the same cores.",
        "",
        f"## Per job (median of {run['rounds']} rounds of {run['jobs']:,} jobs)",
        "",
        "Commands and script calls: INFO commandstats summed over the masters (a script's own "
        "commands included). Client writes: what the client sent, each a round trip. "
        "Redis CPU: used_cpu_user + used_cpu_sys, over all masters and on the queue's master "
        "alone; noisy (other load on the 2 cores shows in it).",
        "",
        "| phase | topology | commands | script calls | client writes | Redis CPU µs | "
        "on the queue's master | cluster / standalone (commands, CPU) |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    cost = found["cost"]
    for phase in (*PHASES, "bulk post + run", "post + run"):
        s, c = cost["standalone"]["medians"][phase], cost["cluster"]["medians"][phase]
        for name, m in (("standalone", s), ("cluster", c)):
            versus = ""
            if name == "cluster":
                cpu = ratio(c["redis_cpu_us"], s["redis_cpu_us"])
                versus = f"{ratio(c['commands'], s['commands'])}, {cpu}"
            lines.append(
                f"| {phase} | {name} | {m['commands']:.3f} | {m['script_calls']:.3f} | "
                f"{m['client_writes']:.3f} | {m['redis_cpu_us']:.1f} | "
                f"{m['redis_cpu_us_queue_master']:.1f} | {versus} |"
            )
    lines += [
        "",
        f"## Latency ({run['rounds']} rounds of {run['trips']:,} calls each, µs)",
        "",
        "`post`: an awaited `Client.post` to a queue no worker serves; `post durable`: the same "
        "with `durable=True` (WAIT 1); `post + result`: `post` then `block_until_result` on an "
        "idle `aqueue worker` process. Per call: commands and script "
        "calls on the masters (the worker's included), the client's writes, connections the "
        "masters accepted.",
        "",
        "| call | topology | p50 | p90 | p99 | cluster / standalone p50 | commands | "
        "script calls | client writes | connections opened |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    lat = found["latency"]
    for kind in lat["standalone"]:
        s, c = lat["standalone"][kind], lat["cluster"][kind]
        for name, m in (("standalone", s), ("cluster", c)):
            per = m["per_call"]
            versus = ratio(c["p50_us"], s["p50_us"]) if name == "cluster" else ""
            lines.append(
                f"| {kind} | {name} | {m['p50_us']:.0f} | {m['p90_us']:.0f} | {m['p99_us']:.0f} "
                f"| {versus} | {per['commands']:.2f} | {per['script_calls']:.2f} | "
                f"{per['client_writes']:.2f} | {per['connections_opened']:.2f} |"
            )
    lines += [
        "",
        "## Queues over the 3 masters",
        "",
        "As aqueue routes them (`Store.node`), checked against the server's CLUSTER KEYSLOT; "
        "the larger sets from the slot table. The named set: "
        + ", ".join(f"`{n}`" for n in NAMED)
        + ".",
        "",
        "| queues | per master | furthest from the mean |",
        "|---|---|---:|",
    ]
    for label, entry in found["spread"].items():
        counts = " / ".join(str(n) for n in entry["per_master"])
        lines.append(f"| {label} | {counts} | {entry['worst_off_mean_pct']:.0f}% |")
    return "\n".join(lines) + "\n"


async def measure(args: argparse.Namespace, home: Path) -> dict[str, Any]:
    topologies = [standalone(home / "standalone"), cluster(home)]
    try:
        Writes.install()
        versions = topologies[0].admins[0].info("server")["redis_version"]
        found: dict[str, Any] = {"cost": await cost(topologies, args.jobs, args.batch, args.rounds)}
        found["spread"] = await spread(topologies[1])
        found["latency"] = await latency(topologies, home, args.trips, args.rounds)
        found["redis"] = versions
        return found
    finally:
        for topology in topologies:
            for admin in topology.admins:
                admin.close()
            topology.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=4000, help="jobs per phase and round")
    parser.add_argument("--batch", type=int, default=64, help="jobs per claim and per finish")
    parser.add_argument("--trips", type=int, default=1000, help="calls of each kind per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument(
        "--machine", default=os.uname().nodename, help="what the machine is, for the report"
    )
    args = parser.parse_args()
    started = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="aqueue-cluster-") as tmp:
        found = anyio.run(measure, args, Path(tmp))
    found["run"] = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["benchmarks/cluster.py", *sys.argv[1:]]),
        "machine_label": args.machine,
        "machine": machine(),
        "redis": found.pop("redis"),
        "redis_py": redis.__version__,
        "aqueue": aqueue_revision(),
        "jobs": args.jobs,
        "trips": args.trips,
        "rounds": args.rounds,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"cluster-{started.strftime('%Y%m%dT%H%M%SZ')}"
    stem.with_suffix(".json").write_text(json.dumps(found, indent=1) + "\n")
    report = markdown(found)
    stem.with_suffix(".md").write_text(report)
    print(report)
    print(f"wrote {stem}.json and .md")


if __name__ == "__main__":
    main()

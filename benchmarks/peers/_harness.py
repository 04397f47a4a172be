"""The measuring half of every peer driver: the scenarios, the clocks and the counters.

Standard library only: it runs inside each peer's own virtualenv, beside that peer's driver
(`<peer>_driver.py`), which supplies a `Peer` (how to post, await, count and start workers) and
calls `main(peer)`. The driver prints one line, `BENCH-RESULT {json}`, and nothing else on stdout.

    python <peer>_driver.py enqueue   --url URL --jobs N --seconds S --mode serial|concurrent|bulk
    python <peer>_driver.py drain     --url URL --jobs N --seconds S --kind noop|sleep --processes P
    python <peer>_driver.py roundtrip --url URL --jobs N --seconds S --config default|tuned
    python <peer>_driver.py pipeline  --url URL --jobs N --seconds S --mode throughput|latency
    python <peer>_driver.py versions

`--jobs` is an upper bound and `--seconds` a time budget for the measured part: a slow peer is
measured on fewer jobs (the figures are rates and per-job costs, and the result says how many).

Worker processes are started by the driver, measured through /proc, and stopped with SIGTERM.
"""

from __future__ import annotations

import abc
import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

HERE = Path(__file__).resolve().parent
QUEUE = "bench"  # the queue (or list, stream, routing key) every peer uses
CONCURRENT_TASKS = 100  # posts in flight at once from an asyncio client, "concurrently"
CONCURRENT_THREADS = 8  # threads posting at once from a blocking client, "concurrently"
BULK_CHUNK = 1000  # jobs per bulk call
SLEEP_SECONDS = 0.01  # what the "sleep" job awaits
POLL_INTERVAL = 0.05  # how often a drain is sampled...
POLL_INTERVAL_NEAR_END = 0.005  # ...and how often once the end is under ~100 ms away
RESULT_MARK = "BENCH-RESULT "
PIPELINE_QUEUES = (f"{QUEUE}-1", f"{QUEUE}-2", f"{QUEUE}-3")  # the pipeline's stages, in order
PIPELINE_RECORD = "BENCH_PIPELINE_RECORD"  # the last stage's environment: its record file
WARMUP, MEASURED = 0, 1  # a pipeline message's label: [label, posted at, stage 1 ran at, ...]


class Unsupported(Exception):
    """The peer has no way to do this (no bulk API, no concurrency in one process, ...)."""


# -- what the pipeline's stages run, in every peer ---------------------------------------------


def pipeline_step(message: list[Any]) -> list[Any]:
    """Stages 1 and 2: note when this stage ran, and pass the message on (its return value).
    The clock is CLOCK_MONOTONIC, one clock for every process of the machine."""
    return [*message, time.monotonic()]


_record_fd: int | None = None


def pipeline_end(message: list[Any]) -> None:
    """Stage 3: note when it ran, as one line of the record file with the message's times
    (one write(2) with O_APPEND: whole lines, whichever thread or process writes them)."""
    global _record_fd
    if _record_fd is None:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        _record_fd = os.open(os.environ[PIPELINE_RECORD], flags, 0o644)
    os.write(_record_fd, (json.dumps([*message, time.monotonic()]) + "\n").encode())


# -- Redis, as the measurer sees it --------------------------------------------------------


class RawRedis:
    """A minimal blocking RESP2 client: the measurer's own connection, independent of any
    peer's client library, so every peer is counted the same way."""

    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        self._sock = socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379))
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._file = self._sock.makefile("rb")
        db = parsed.path.strip("/")
        if db and db != "0":
            self.call("SELECT", db)

    def call(self, *args: str | int | bytes) -> Any:
        parts = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            parts += [b"$%d\r\n" % len(data), data, b"\r\n"]
        self._sock.sendall(b"".join(parts))
        return self._read()

    def _read(self) -> Any:
        line = self._file.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(f"Redis error: {rest.decode()}")
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self._file.read(size + 2)[:-2]
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [self._read() for _ in range(size)]
        raise RuntimeError(f"unexpected Redis reply {line!r}")

    def info(self, *sections: str) -> dict[str, str]:
        text = self.call("INFO", *sections).decode()
        pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
        return {key: value for key, value in pairs}

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
            self._sock.close()


@dataclass(frozen=True)
class RedisStats:
    cpu: float  # seconds of CPU, user + system, since the server started
    calls: dict[str, int]  # commands executed, by name (commands run by Lua scripts included)

    @property
    def total(self) -> int:
        return sum(self.calls.values())


def redis_stats(redis: RawRedis) -> RedisStats:
    info = redis.info("cpu", "commandstats")
    calls = {
        key.removeprefix("cmdstat_"): int(value.split("calls=", 1)[1].split(",", 1)[0])
        for key, value in info.items()
        if key.startswith("cmdstat_")
    }
    return RedisStats(float(info["used_cpu_sys"]) + float(info["used_cpu_user"]), calls)


def calls_between(before: RedisStats, after: RedisStats) -> dict[str, float]:
    return {
        name: float(count - before.calls.get(name, 0))
        for name, count in after.calls.items()
        if count != before.calls.get(name, 0)
    }


def per_job(
    before: RedisStats, after: RedisStats, jobs: int, own: dict[str, float]
) -> dict[str, Any]:
    """Redis work between two samples, per job, less the measurer's own commands (`own`)."""
    calls = calls_between(before, after)
    for name, count in own.items():
        calls[name] = calls.get(name, 0.0) - count
    per = {name: count / jobs for name, count in calls.items() if abs(count) / jobs >= 0.0005}
    return {
        "redis_cmds_per_job": sum(calls.values()) / jobs,
        "redis_cpu_us_per_job": 1e6 * (after.cpu - before.cpu) / jobs,
        "redis_cmds_by_name": dict(sorted(per.items(), key=lambda kv: -kv[1])),
    }


# -- processes, as /proc sees them -----------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()  # fields from the 3rd (state) on


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, ()))
    return tree


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process tree: user + system of the live processes, plus those of the
    children they have reaped (a forked child that ended is still counted)."""
    total = 0
    for member in descendants(pid):
        fields = _stat_fields(member)
        if fields is not None:
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total / _TICKS


def tree_memory(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process tree in MiB, summed over its live processes."""
    rss = peak = 0
    for member in descendants(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    peak += int(line.split()[1])
    return rss / 1024, peak / 1024


@dataclass
class WorkerCommand:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


class Workers:
    """Worker processes started for one measurement; their output goes to a log file."""

    def __init__(self, commands: list[WorkerCommand], log_path: Path) -> None:
        self.commands = commands
        self.log_path = log_path
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Workers:
        log = self.log_path.open("ab")
        for command in self.commands:
            env = {**os.environ, **command.env, "PYTHONUNBUFFERED": "1"}
            self.procs.append(
                subprocess.Popen(
                    command.argv,
                    cwd=HERE,
                    env=env,
                    stdout=log,
                    stderr=log,
                    stdin=subprocess.DEVNULL,
                )
            )
        log.close()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def check(self) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"worker {proc.args!r} exited with {proc.returncode}; its log ends:\n"
                    + self.log_tail()
                )

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-3000:]
        return ""

    def cpu(self) -> float:
        return sum(tree_cpu(p.pid) for p in self.procs)

    def memory(self) -> tuple[float, float]:
        pairs = [tree_memory(p.pid) for p in self.procs]
        return sum(r for r, _ in pairs), sum(h for _, h in pairs)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM each worker (its graceful stop); SIGKILL what is left of its tree after
        `timeout`. Only the processes started here, and their children, are signalled: each is
        known by its pid and start time, so a pid reused meanwhile is left alone."""
        tree = {pid: _start_time(pid) for p in self.procs for pid in descendants(p.pid)}
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.0, deadline - time.monotonic()))
        for pid, started in tree.items():
            fields = _stat_fields(pid)
            if fields is not None and fields[0] != "Z" and _start_time(pid) == started:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)


def _start_time(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return None if fields is None else fields[19]  # field 22 of /proc/<pid>/stat


# -- what a peer provides ---------------------------------------------------------------------


class Peer(abc.ABC):
    """One queue library, driven the same way as every other."""

    name: str
    packages: tuple[str, ...]  # distributions whose versions are reported
    blocking = False  # its client is synchronous: "concurrently" uses threads

    async def open(self, url: str) -> None:
        self.url = url

    async def close(self) -> None:
        return None

    @abc.abstractmethod
    async def post(self, kind: str) -> None:
        """Post one job of `kind` ("noop" or "sleep"), awaited."""

    def post_blocking(self, kind: str) -> None:
        """The same for a blocking client, called from threads."""
        raise Unsupported("no blocking client")

    async def post_many(self, kind: str, count: int) -> None:
        """Post `count` jobs in one call of the peer's bulk API."""
        raise Unsupported("no bulk API")

    @abc.abstractmethod
    async def roundtrip(self, config: str, timeout: float) -> None:
        """Post one no-op job and await its result, with the client settings of `config`."""

    @abc.abstractmethod
    async def outstanding(self, posted: int) -> int:
        """How many of the `posted` jobs have not finished (cheap: called every 50 ms)."""

    @abc.abstractmethod
    def worker_commands(
        self, *, kind: str, processes: int, config: str, purpose: str
    ) -> list[WorkerCommand]:
        """The worker processes to start. `purpose`: "drain" (throughput: the peer's best
        settings, concurrency 100 for the sleep jobs) or "roundtrip"."""

    def run_worker(self, argv: list[str]) -> None:
        """For peers whose worker is started through their driver (`<driver> worker ...`)."""
        raise Unsupported("this peer's worker is started by its own command")

    def pipeline_workers(self, record: Path) -> list[WorkerCommand]:
        """The worker processes of a 3-stage pipeline (PIPELINE_QUEUES), one per stage, at the
        throughput settings: stages 1 and 2 run `pipeline_step`, stage 3 `pipeline_end`, with
        PIPELINE_RECORD=`record` in its environment."""
        raise Unsupported("no pipelines (a job whose result becomes the next job's message)")

    async def pipeline_post(self, message: list[Any]) -> None:
        """Post `message` as the input of the pipeline, awaited."""
        raise Unsupported("no pipelines")

    def pipeline_post_blocking(self, message: list[Any]) -> None:
        """The same for a blocking client, called from threads."""
        raise Unsupported("no blocking client")

    async def pipeline_post_many(self, messages: list[list[Any]]) -> None:
        """Post `messages` as the pipeline's inputs in one call of the peer's bulk API."""
        raise Unsupported("no bulk API for pipelines")


# -- the scenarios ----------------------------------------------------------------------------


class Budget:
    """Up to `count` jobs, and no more once `seconds` have gone by (checked before each post)."""

    def __init__(self, count: int, seconds: float) -> None:
        self.count = count
        self.deadline = time.perf_counter() + seconds
        self.posted = 0
        self._lock = threading.Lock()

    def take(self, n: int = 1) -> int:
        """Claim up to `n` more posts; 0 when the budget is spent."""
        with self._lock:
            n = min(n, self.count - self.posted)
            if n <= 0 or time.perf_counter() >= self.deadline:
                return 0
            self.posted += n
            return n


async def _serially(peer: Peer, kind: str, budget: Budget) -> None:
    while budget.take():
        await peer.post(kind)


async def _concurrently(peer: Peer, kind: str, budget: Budget) -> None:
    await _post_at_once(peer, budget, lambda: peer.post_blocking(kind), lambda: peer.post(kind))


async def _post_at_once(
    peer: Peer,
    budget: Budget,
    post_blocking: Callable[[], object],
    post: Callable[[], Awaitable[object]],
) -> None:
    """Post as `budget` allows, many at once: from threads for a blocking peer, else from
    tasks."""
    if peer.blocking:

        def post_some() -> None:
            while budget.take():
                post_blocking()

        with ThreadPoolExecutor(CONCURRENT_THREADS) as pool:
            for future in [pool.submit(post_some) for _ in range(CONCURRENT_THREADS)]:
                future.result()
        return

    async def post_some_async() -> None:
        while budget.take():
            await post()

    tasks = min(CONCURRENT_TASKS, budget.count)
    await asyncio.gather(*(post_some_async() for _ in range(tasks)))


async def _bulk(peer: Peer, kind: str, budget: Budget) -> None:
    while n := budget.take(BULK_CHUNK):
        await peer.post_many(kind, n)


MODES: dict[str, Callable[[Peer, str, Budget], Awaitable[None]]] = {
    "serial": _serially,
    "concurrent": _concurrently,
    "bulk": _bulk,
}


async def prefill(peer: Peer, kind: str, count: int, seconds: float) -> tuple[int, str]:
    """Queue up to `count` jobs (fewer if `seconds` run out) the fastest way the peer has:
    how many, and which way."""
    try:
        await peer.post_many(kind, 1)
        budget, how = Budget(count - 1, seconds), "bulk"
        await _bulk(peer, kind, budget)
    except Unsupported:
        await peer.post(kind)
        budget, how = Budget(count - 1, seconds), "concurrent"
        await _concurrently(peer, kind, budget)
    return budget.posted + 1, how


async def scenario_enqueue(
    peer: Peer, redis: RawRedis, jobs: int, mode: str, seconds: float
) -> dict[str, Any]:
    """Post `jobs` no-op jobs (or as many as `seconds` allow) in `mode`."""
    post = MODES[mode]
    await post(peer, "noop", Budget(20, 60))  # warm up: connections open, scripts loaded
    budget = Budget(jobs, seconds)
    before = redis_stats(redis)
    cpu0, t0 = time.process_time(), time.perf_counter()
    await post(peer, "noop", budget)
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    after = redis_stats(redis)
    return {
        "jobs": budget.posted,
        "seconds": elapsed,
        "rate": budget.posted / elapsed,
        "client_cpu_us_per_job": 1e6 * cpu / budget.posted,
        **per_job(before, after, budget.posted, own={"info": 1}),  # the first INFO
    }


@dataclass(frozen=True)
class Sample:
    t: float
    outstanding: int
    redis: RedisStats
    worker_cpu: float


async def scenario_drain(
    peer: Peer, redis: RawRedis, jobs: int, kind: str, processes: int, seconds: float, log: Path
) -> dict[str, Any]:
    """Queue `jobs` (fewer if posting them would take over `seconds`), then start the workers
    and sample until every job has finished, or the measured window has lasted `seconds`.

    The window runs from the first sample that sees a finished job to the last one, so the
    workers' start-up (imports, connecting) is left out of the rate; `wall_seconds` includes
    it. Per-job figures (worker CPU, Redis CPU and commands) cover the same window.
    """
    commands = peer.worker_commands(kind=kind, processes=processes, config="tuned", purpose="drain")
    jobs, how = await prefill(peer, kind, jobs, seconds)
    if await peer.outstanding(jobs) != jobs:
        raise RuntimeError(f"{await peer.outstanding(jobs)} outstanding after posting {jobs}")

    async def sample(workers: Workers | None) -> Sample:
        left = await peer.outstanding(jobs)
        stats = redis_stats(redis)
        return Sample(time.perf_counter(), left, stats, workers.cpu() if workers else 0.0)

    # What one sample costs in commands (its own INFO included), measured before any worker runs.
    calib = [await sample(None) for _ in range(3)]
    own_per_sample = {
        name: count / (len(calib) - 1)
        for name, count in calls_between(calib[0].redis, calib[-1].redis).items()
    }

    deadline_s = max(120.0, jobs / 50)
    with Workers(commands, log) as workers:
        spawned = time.perf_counter()
        samples = [await sample(workers)]
        while samples[-1].outstanding > 0 and _window(samples, jobs) < seconds:
            workers.check()
            if time.perf_counter() - spawned > deadline_s:
                left = samples[-1].outstanding
                raise RuntimeError(f"drain not done after {deadline_s:.0f} s: {left} left")
            await asyncio.sleep(_next_interval(samples, jobs))
            samples.append(await sample(workers))
        rss, peak = workers.memory()
    # The window: from the first sample that saw a finished job to the last one.
    start = next(i for i, s in enumerate(samples) if s.outstanding < jobs)
    first, last = samples[start], samples[-1]
    if first is last:  # all finished before any sample saw one: fall back to the whole run
        first, start = Sample(spawned, jobs, calib[-1].redis, 0.0), -1
    window_jobs = first.outstanding - last.outstanding
    taken = len(samples) - 1 - start  # samples whose commands fall inside the window
    return {
        "jobs": jobs,
        "capped": last.outstanding > 0,  # the window reached `seconds` before the last job
        "processes": processes,
        "prefilled_with": how,
        "rate": window_jobs / (last.t - first.t),
        "window_jobs": window_jobs,
        "wall_seconds": last.t - spawned,
        "first_job_after_seconds": samples[max(start, 0)].t - spawned,
        "worker_cpu_us_per_job": 1e6 * (last.worker_cpu - first.worker_cpu) / window_jobs,
        "worker_peak_rss_mb": peak,
        "worker_rss_mb": rss,
        "samples": taken,
        **per_job(
            first.redis,
            last.redis,
            window_jobs,
            {name: taken * count for name, count in own_per_sample.items()},
        ),
    }


def _window(samples: list[Sample], jobs: int) -> float:
    first = next((s for s in samples if s.outstanding < jobs), None)
    return 0.0 if first is None else samples[-1].t - first.t


def _next_interval(samples: list[Sample], jobs: int) -> float:
    """50 ms, or 5 ms once the rate so far says the end is less than 100 ms away."""
    first = next((s for s in samples if s.outstanding < jobs), None)
    last = samples[-1]
    if first is None or last.t <= first.t:
        return POLL_INTERVAL
    rate = (first.outstanding - last.outstanding) / (last.t - first.t)
    if rate > 0 and last.outstanding / rate < 0.1:
        return POLL_INTERVAL_NEAR_END
    return POLL_INTERVAL


def _percentile(sorted_values: list[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


async def scenario_roundtrip(
    peer: Peer, jobs: int, config: str, budget: float, log: Path
) -> dict[str, Any]:
    """Post one job and await its result, `jobs` times in a row (or until `budget` seconds
    have gone, for peers whose default poll intervals make each one take 0.5 s or more)."""
    commands = peer.worker_commands(kind="noop", processes=1, config=config, purpose="roundtrip")
    with Workers(commands, log) as workers:
        ready_by = time.perf_counter() + 60
        while True:  # the first round trip completes once the worker is up
            workers.check()
            try:
                await peer.roundtrip(config, timeout=5)
                break
            except Exception:
                if time.perf_counter() > ready_by:
                    raise
        warm_until = time.perf_counter() + 1
        for _ in range(5):  # a few more, within a second (a default poll can take 0.5 s)
            await peer.roundtrip(config, timeout=30)
            if time.perf_counter() > warm_until:
                break
        idle_rss, _ = workers.memory()
        times: list[float] = []
        started = time.perf_counter()
        while len(times) < jobs and time.perf_counter() - started < budget:
            t0 = time.perf_counter()
            await peer.roundtrip(config, timeout=30)
            times.append(time.perf_counter() - t0)
        workers.check()
    ordered = sorted(times)
    return {
        "samples": len(times),
        "p50_ms": 1e3 * statistics.median(ordered),
        "p99_ms": 1e3 * _percentile(ordered, 0.99),
        "mean_ms": 1e3 * statistics.fmean(ordered),
        "max_ms": 1e3 * ordered[-1],
        "idle_worker_rss_mb": idle_rss,
    }


class PipelineRecord:
    """The lines stage 3 has written to the record file so far (read on from where it was)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[list[Any]] = []
        self.measured = 0  # lines labelled MEASURED
        self._file: Any = None
        self._partial = b""

    def read(self) -> PipelineRecord:
        """Take in what was written since."""
        if self._file is None:
            try:
                self._file = self.path.open("rb")
            except FileNotFoundError:  # stage 3 has run nothing yet
                return self
        *whole, self._partial = (self._partial + self._file.read()).split(b"\n")
        for line in whole:
            self.lines.append(json.loads(line))
            self.measured += self.lines[-1][0] == MEASURED
        return self

    @property
    def total(self) -> int:
        return len(self.lines)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


async def _pipeline_post_all(peer: Peer, message: list[Any], budget: Budget) -> None:
    """Post `message` as the pipeline's input as often as `budget` allows, the fastest way the
    peer has: bulk, else concurrently."""
    first = budget.take(BULK_CHUNK)
    try:
        await peer.pipeline_post_many([message] * first)
    except Unsupported:
        budget.posted -= first  # none was posted: the peer has no bulk API
    else:
        while n := budget.take(BULK_CHUNK):
            await peer.pipeline_post_many([message] * n)
        return
    await _post_at_once(
        peer,
        budget,
        lambda: peer.pipeline_post_blocking(message),
        lambda: peer.pipeline_post(message),
    )


async def _until_arrived(
    record: PipelineRecord, count: int, workers: Workers, timeout: float, interval: float
) -> bool:
    """Wait until the record has `count` measured lines (False: not within `timeout` s)."""
    deadline = time.perf_counter() + timeout
    while record.read().measured < count:
        workers.check()
        if time.perf_counter() > deadline:
            return False
        await asyncio.sleep(interval)
    return True


def _spread(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": 1e3 * statistics.median(ordered),
        "p99_ms": 1e3 * _percentile(ordered, 0.99),
        "max_ms": 1e3 * ordered[-1],
    }


def _latencies(lines: list[list[Any]]) -> dict[str, Any]:
    """From measured lines [label, posted, stage 1 ran, stage 2 ran, stage 3 ran]: a hop is
    stage k's handler to stage k+1's (both hops pooled); end to end, the post to stage 3."""
    hops = [line[k + 1] - line[k] for line in lines for k in (2, 3)]
    figures: dict[str, Any] = {f"hop_{name}": v for name, v in _spread(hops).items()}
    figures |= {f"hop1_{name}": v for name, v in _spread([x[3] - x[2] for x in lines]).items()}
    figures |= {f"hop2_{name}": v for name, v in _spread([x[4] - x[3] for x in lines]).items()}
    figures |= {f"first_{name}": v for name, v in _spread([x[2] - x[1] for x in lines]).items()}
    figures |= {f"e2e_{name}": v for name, v in _spread([x[4] - x[1] for x in lines]).items()}
    return figures


async def scenario_pipeline(
    peer: Peer, redis: RawRedis, jobs: int, mode: str, seconds: float, log: Path
) -> dict[str, Any]:
    """Three stages of no-op handlers, one worker process each, started and warmed up (a
    message through all three, then 20 more) before anything is measured.

    `throughput`: post `jobs` inputs at once (the fastest way the peer has; no more once
    `seconds` have gone), and wait for stage 3 to have run them all (or `seconds` more): the
    rate is messages from the first post to the last stage-3 run. `latency`: one message at a
    time, the next posted once stage 3 has run the last, up to `jobs` or `seconds`. Each stage
    notes when its handler ran in the message (stage 3 in the record file): a hop is stage k's
    handler to stage k+1's, so it holds stage k's completion, the output's post, and stage
    k+1's claim of it. Worker CPU, Redis CPU and commands are per message, over all stages.
    """
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as folder:
        record = PipelineRecord(Path(folder) / "record.jsonl")
        commands = peer.pipeline_workers(record.path)
        with Workers(commands, log) as workers, contextlib.closing(record):
            # the workers start in any order: a message waits in its queue meanwhile
            for count in (1, 20):
                before = record.total
                await _pipeline_post_all(peer, [WARMUP, time.monotonic()], Budget(count, 60))
                deadline = time.perf_counter() + 60
                while record.read().total < before + count:
                    workers.check()
                    if time.perf_counter() > deadline:
                        raise RuntimeError(f"{count} messages did not go through in 60 s")
                    await asyncio.sleep(0.01)
            if mode == "throughput":
                return await _pipeline_throughput(peer, redis, record, workers, jobs, seconds)
            return await _pipeline_latency(peer, record, workers, jobs, seconds)


async def _pipeline_throughput(
    peer: Peer, redis: RawRedis, record: PipelineRecord, workers: Workers, jobs: int, seconds: float
) -> dict[str, Any]:
    before, cpu0 = redis_stats(redis), workers.cpu()
    t0 = time.monotonic()
    budget = Budget(jobs, seconds)
    await _pipeline_post_all(peer, [MEASURED, t0], budget)
    posted_s = time.monotonic() - t0
    done = await _until_arrived(record, budget.posted, workers, seconds, POLL_INTERVAL_NEAR_END)
    after, cpu1 = redis_stats(redis), workers.cpu()
    lines = [line for line in record.lines if line[0] == MEASURED]
    last = max(line[4] for line in lines)
    return {
        "jobs": budget.posted,
        "arrived": len(lines),
        "capped": not done,
        "rate": len(lines) / (last - t0),
        "posting_seconds": posted_s,
        "wall_seconds": last - t0,
        "worker_cpu_us_per_job": 1e6 * (cpu1 - cpu0) / len(lines),
        **per_job(before, after, len(lines), own={"info": 1}),
        **{f"loaded_{name}": v for name, v in _latencies(lines).items()},
    }


async def _pipeline_latency(
    peer: Peer, record: PipelineRecord, workers: Workers, jobs: int, seconds: float
) -> dict[str, Any]:
    started = time.perf_counter()
    count = 0
    while count < jobs and time.perf_counter() - started < seconds:
        if peer.blocking:
            peer.pipeline_post_blocking([MEASURED, time.monotonic()])
        else:
            await peer.pipeline_post([MEASURED, time.monotonic()])
        count += 1
        if not await _until_arrived(record, count, workers, 30, 0.0005):
            raise RuntimeError(f"message {count} did not reach stage 3 in 30 s")
    lines = [line for line in record.lines if line[0] == MEASURED]
    figures = _latencies(lines)
    return {
        "samples": len(lines),
        "p50_ms": figures["hop_p50_ms"],  # the table's latency columns: a hop
        "p99_ms": figures["hop_p99_ms"],
        **figures,
    }


def versions(peer: Peer) -> dict[str, str]:
    found = {}
    for name in peer.packages:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


# -- the command line -------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("enqueue", "drain", "roundtrip", "pipeline"):
        cmd = sub.add_parser(name)
        cmd.add_argument("--url", required=True)
        cmd.add_argument("--jobs", type=int, required=True)
        cmd.add_argument("--seconds", type=float, default=30.0, help="time budget")
        cmd.add_argument("--log", type=Path, default=Path(os.devnull))
        if name == "enqueue":
            cmd.add_argument("--mode", choices=sorted(MODES), required=True)
        if name == "drain":
            cmd.add_argument("--kind", choices=["noop", "sleep"], default="noop")
            cmd.add_argument("--processes", type=int, default=1)
        if name == "roundtrip":
            cmd.add_argument("--config", choices=["default", "tuned"], required=True)
        if name == "pipeline":
            cmd.add_argument("--mode", choices=["throughput", "latency"], required=True)
    sub.add_parser("versions")
    sub.add_parser("worker", help="run a worker (the options are the peer's own)")
    return parser


def _event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


async def _measure(peer: Peer, args: argparse.Namespace) -> dict[str, Any]:
    redis = RawRedis(args.url)
    await peer.open(args.url)
    try:
        if args.command == "enqueue":
            return await scenario_enqueue(peer, redis, args.jobs, args.mode, args.seconds)
        if args.command == "drain":
            return await scenario_drain(
                peer, redis, args.jobs, args.kind, args.processes, args.seconds, args.log
            )
        if args.command == "pipeline":
            return await scenario_pipeline(
                peer, redis, args.jobs, args.mode, args.seconds, args.log
            )
        return await scenario_roundtrip(peer, args.jobs, args.config, args.seconds, args.log)
    finally:
        await peer.close()
        redis.close()


def main(peer: Peer) -> None:
    if sys.argv[1:2] == ["worker"]:
        peer.run_worker(sys.argv[2:])
        return
    args = _parser().parse_args()
    if args.command == "versions":
        result: dict[str, Any] = {"versions": versions(peer), "python": sys.version.split()[0]}
    else:
        try:
            with asyncio.Runner(loop_factory=_event_loop_factory()) as runner:
                result = runner.run(_measure(peer, args))
        except Unsupported as exc:
            result = {"unsupported": str(exc)}
    print(RESULT_MARK + json.dumps(result), flush=True)

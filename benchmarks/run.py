"""The benchmark suite: aqueue against arq, SAQ, streaQ, taskiq, Dramatiq, RQ and Celery.

    .venv/bin/python benchmarks/run.py                      # the full run (~22 minutes)
    .venv/bin/python benchmarks/run.py --smoke              # tiny sizes, once (~2 minutes)
    .venv/bin/python benchmarks/run.py --peers aqueue arq --scenarios drain roundtrip

Starts one redis-server of its own (a free loopback port, a temporary folder, no persistence),
gives each peer its own virtualenv under benchmarks/.venvs/ (aqueue runs from the project's
.venv), and runs every measurement in a fresh driver process (benchmarks/peers/<peer>_driver.py)
that prints one JSON line. Peers are interleaved (A B C A B C); the benchmark server alone is
flushed before every run; medians are reported. Writes benchmarks/results/<timestamp>.json,
latest.md (the table) and latest.png (the chart); a smoke run writes them to results/smoke/.
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PEERS_DIR = HERE / "peers"
VENVS = HERE / ".venvs"
RESULTS = HERE / "results"
PROJECT_PYTHON = REPO / ".venv" / "bin" / "python"

sys.path.insert(0, str(PEERS_DIR))
from _harness import RESULT_MARK, RawRedis  # noqa: E402

from aqueue._redis.server import RedisServer  # noqa: E402


@dataclass(frozen=True)
class PeerSpec:
    name: str
    requirements: tuple[str, ...]  # what pip installs in its virtualenv; () = the project's

    @property
    def python(self) -> Path:
        return PROJECT_PYTHON if not self.requirements else VENVS / self.name / "bin" / "python"


# Pinned, so that two runs compare the same code; hiredis and uvloop wherever the peer uses
# redis-py or asyncio. SAQ 0.26.4 imports typing_extensions without declaring it.
PEERS = [
    PeerSpec("aqueue", ()),
    PeerSpec("arq", ("arq==0.28.0", "hiredis==3.5.0", "uvloop==0.23.0")),
    PeerSpec("saq", ("saq[hiredis]==0.26.4", "typing_extensions", "uvloop==0.23.0")),
    PeerSpec("streaq", ("streaq==7.2.0", "uvloop==0.23.0")),
    PeerSpec(
        "taskiq", ("taskiq==0.13.0", "taskiq-redis==1.2.4", "hiredis==3.5.0", "uvloop==0.23.0")
    ),
    PeerSpec("dramatiq", ("dramatiq[redis]==2.2.1", "hiredis==3.5.0")),
    PeerSpec("rq", ("rq==3.0.0", "hiredis==3.5.0")),
    PeerSpec("celery", ("celery[redis]==5.7.0", "hiredis==3.5.0")),
]
PLOT = PeerSpec("plot", ("matplotlib==3.11.2",))


@dataclass(frozen=True)
class Case:
    key: str
    scenario: str  # what --scenarios selects
    args: tuple[str, ...]  # the driver's command line, less --url and --log


@dataclass(frozen=True)
class Sizes:
    enqueue: int
    drain: int
    sleep: int
    roundtrip: int
    pipeline: int  # messages through the 3 stages at once
    pipeline_trips: int  # messages through them one at a time
    seconds: float  # time budget of one measurement (and of a drain's pre-filling)
    roundtrip_seconds: float
    pipeline_seconds: float  # of posting the pipeline's inputs, then of waiting for them


FULL = Sizes(20_000, 20_000, 5_000, 1_000, 3_000, 500, 3.0, 4.0, pipeline_seconds=10.0)
SMOKE = Sizes(300, 500, 200, 30, 200, 20, 1.5, 1.0, pipeline_seconds=5.0)


def cases(sizes: Sizes) -> list[Case]:
    def budget(count: int, seconds: float) -> tuple[str, ...]:
        return ("--jobs", str(count), "--seconds", str(seconds))

    enqueue = ("enqueue", *budget(sizes.enqueue, sizes.seconds), "--mode")
    drain = ("drain", *budget(sizes.drain, sizes.seconds), "--processes")
    sleep = ("drain", *budget(sizes.sleep, sizes.seconds), "--kind", "sleep")
    roundtrip = ("roundtrip", *budget(sizes.roundtrip, sizes.roundtrip_seconds), "--config")
    through = ("pipeline", *budget(sizes.pipeline, sizes.pipeline_seconds), "--mode")
    trips = ("pipeline", *budget(sizes.pipeline_trips, sizes.pipeline_seconds), "--mode")
    return [
        Case("enqueue-serial", "enqueue", (*enqueue, "serial")),
        Case("enqueue-concurrent", "enqueue", (*enqueue, "concurrent")),
        Case("enqueue-bulk", "enqueue", (*enqueue, "bulk")),
        Case("drain-1", "drain", (*drain, "1")),
        Case("drain-2", "drain", (*drain, "2")),
        Case("sleep", "sleep", sleep),
        Case("roundtrip-default", "roundtrip", (*roundtrip, "default")),
        Case("roundtrip-tuned", "roundtrip", (*roundtrip, "tuned")),
        Case("pipeline-throughput", "pipeline", (*through, "throughput")),
        Case("pipeline-latency", "pipeline", (*trips, "latency")),
    ]


# -- virtualenvs ------------------------------------------------------------------------------


def ensure_venv(spec: PeerSpec) -> None:
    """Create the peer's virtualenv and install its requirements, unless already done."""
    if not spec.requirements:
        return
    venv = VENVS / spec.name
    marker = venv / ".bench-requirements"
    wanted = "\n".join(spec.requirements) + "\n"
    if marker.exists() and marker.read_text() == wanted and spec.python.exists():
        return
    print(f"  installing {spec.name}: {' '.join(spec.requirements)}", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(spec.python), "-m", "pip", "--disable-pip-version-check", "-qq"]
    subprocess.run([*pip, "install", "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "install", *spec.requirements], check=True)
    marker.write_text(wanted)


def installed_packages(spec: PeerSpec) -> dict[str, str]:
    out = subprocess.run(
        [str(spec.python), "-m", "pip", "list", "--format", "json", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {p["name"]: p["version"] for p in json.loads(out)}


# -- the machine ------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_kb = 0
    with contextlib.suppress(OSError, IndexError, ValueError):
        memory_kb = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kb / 1024**2, 1),
        "system": platform.platform(),
        "python": sys.version.split()[0],
    }


def aqueue_revision() -> dict[str, str]:
    """What aqueue's code is: the commit, the hash of its `aqueue/` tree at that commit, and
    whether `aqueue/` has uncommitted changes (the project's .venv runs the working tree)."""

    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return result.stdout.strip() if result.returncode == 0 else ""

    dirty = bool(git("status", "--porcelain", "--", "aqueue"))
    return {
        "commit": git("rev-parse", "--short=12", "HEAD") or "unknown",
        "tree": (git("rev-parse", "--short=12", "HEAD:aqueue") or "unknown") + "+dirty" * dirty,
    }


# -- running ----------------------------------------------------------------------------------


def run_driver(spec: PeerSpec, case: Case, url: str, log: Path, timeout: float) -> dict[str, Any]:
    """One measurement in a fresh driver process; its JSON result, or {"error": ...}."""
    argv = [str(spec.python), str(PEERS_DIR / f"{spec.name}_driver.py"), *case.args]
    argv += ["--url", url, "--log", str(log)]
    env = dict(os.environ)
    if not spec.requirements:  # aqueue: this checkout's tree, whichever one the .venv installed
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        argv,
        cwd=PEERS_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: a hung run is ended with its workers
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        err += f"\n(killed after {timeout:.0f} s)"
    with log.open("a") as f:
        f.write(err)
    for line in reversed(out.splitlines()):
        if line.startswith(RESULT_MARK):
            result: dict[str, Any] = json.loads(line.removeprefix(RESULT_MARK))
            return result
    return {"error": (err.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]}


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of the numeric figures of the successful runs (the other fields of the first)."""
    ok = [r for r in runs if "error" not in r and "unsupported" not in r]
    if not ok:
        return runs[0] if runs else {}
    merged: dict[str, Any] = {"runs": len(ok), "failed_runs": len(runs) - len(ok)}
    for key, value in ok[0].items():
        values = [r[key] for r in ok if key in r]
        if isinstance(value, bool):
            merged[key] = any(values)
        elif isinstance(value, int | float):
            merged[key] = statistics.median(values)
        elif isinstance(value, dict) and all(isinstance(v, int | float) for v in value.values()):
            names = {name for r in values for name in r}
            merged[key] = {
                name: statistics.median(r.get(name, 0) for r in values) for name in sorted(names)
            }
        else:
            merged[key] = value
    return merged


@contextlib.contextmanager
def benchmark_server() -> Iterator[RedisServer]:
    with tempfile.TemporaryDirectory(prefix="aqueue-bench-") as folder:
        server = RedisServer(Path(folder), appendonly=False).start()
        try:
            yield server
        finally:
            server.stop()


# -- reporting --------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def table(report: dict[str, Any]) -> str:
    """The Markdown table: one row per figure, one column per peer."""
    med: dict[str, dict[str, dict[str, Any]]] = report["medians"]
    peers: list[str] = report["peers_run"]
    notes: list[str] = []

    def cell(case: str, peer: str, render: Any) -> str:
        r = med.get(case, {}).get(peer)
        if r is None:
            return ""
        if "unsupported" in r:
            return "n/a"
        if "error" in r:
            notes.append(f"{peer}, {case}: failed: {r['error']}")
            return "failed"
        text = str(render(r))
        if r.get("failed_runs"):
            notes.append(f"{peer}, {case}: {r['failed_runs']} of the runs failed (see the JSON)")
        if "rate" in r and (r.get("capped") or r["jobs"] < report["sizes"].get(case, 0)):
            text += " *"
        return text

    def rate(r: dict[str, Any]) -> str:
        return _num(r["rate"])

    def latency(r: dict[str, Any]) -> str:
        text = f"{_num(r['p50_ms'], 1)} / {_num(r['p99_ms'], 1)}"
        return text if r["samples"] >= 100 else f"{text} (n={r['samples']:.0f})"

    def both(field: str, digits: int = 1, posted: str = "enqueue-serial") -> Any:
        def render(peer: str) -> str:
            post = med.get(posted, {}).get(peer, {})
            drain = med.get("drain-1", {}).get(peer, {})
            if field not in post or field not in drain:
                return ""
            total, parts = post[field] + drain[field], (post[field], drain[field])
            return f"{_num(total, digits)} ({_num(parts[0], digits)} + {_num(parts[1], digits)})"

        return render

    def figure(field: str, digits: int = 0) -> Any:
        return lambda r: _num(r[field], digits)

    def spread(prefix: str) -> Any:
        return lambda r: f"{_num(r[prefix + '_p50_ms'], 1)} / {_num(r[prefix + '_p99_ms'], 1)}"

    rows: list[tuple[str, list[str]]] = []
    size = {case: f"{count:,}" for case, count in report["sizes"].items()}
    for case, title, render in [
        ("enqueue-serial", f"enqueue {size.get('enqueue-serial')}, one by one (jobs/s)", rate),
        (
            "enqueue-concurrent",
            f"enqueue {size.get('enqueue-concurrent')}, concurrently (jobs/s)",
            rate,
        ),
        ("enqueue-bulk", f"enqueue {size.get('enqueue-bulk')}, bulk (jobs/s)", rate),
        ("drain-1", f"drain {size.get('drain-1')} no-op jobs, 1 worker process (jobs/s)", rate),
        ("drain-2", f"drain {size.get('drain-2')} no-op jobs, 2 worker processes (jobs/s)", rate),
        ("sleep", f"drain {size.get('sleep')} 10 ms jobs, concurrency 100 (jobs/s)", rate),
        ("roundtrip-default", "round trip p50 / p99, defaults (ms)", latency),
        ("roundtrip-tuned", "round trip p50 / p99, tuned (ms)", latency),
        ("drain-1", "worker peak RSS, no-op drain (MiB)", figure("worker_peak_rss_mb")),
        ("roundtrip-default", "idle worker RSS (MiB)", figure("idle_worker_rss_mb")),
        ("drain-1", "worker CPU per no-op job (µs)", figure("worker_cpu_us_per_job")),
    ]:
        if case in med:
            rows.append((title, [cell(case, p, render) for p in peers]))
    if "enqueue-serial" in med and "drain-1" in med:
        rows.append(
            ("Redis CPU per job: post + run (µs)", [both("redis_cpu_us_per_job")(p) for p in peers])
        )
        rows.append(
            ("Redis commands per job: post + run", [both("redis_cmds_per_job")(p) for p in peers])
        )
    if "enqueue-bulk" in med and "drain-1" in med:  # amortised: the cheapest way to post
        for title, field in [
            ("Redis CPU per job: bulk post + run (µs)", "redis_cpu_us_per_job"),
            ("Redis commands per job: bulk post + run", "redis_cmds_per_job"),
        ]:
            render = both(field, posted="enqueue-bulk")
            rows.append((title, [render(p) or "n/a" for p in peers]))
    for case, title, render in [
        (
            "pipeline-throughput",
            f"pipeline of 3 stages, {size.get('pipeline-throughput')} messages: post to the "
            "end of stage 3 (messages/s)",
            rate,
        ),
        ("pipeline-latency", "pipeline hop p50 / p99, one message at a time (ms)", latency),
        ("pipeline-latency", "pipeline post to stage 3 p50 / p99, one by one (ms)", spread("e2e")),
        (
            "pipeline-throughput",
            "pipeline worker CPU per message, 3 stages (µs)",
            figure("worker_cpu_us_per_job"),
        ),
        (
            "pipeline-throughput",
            "pipeline Redis commands per message: post + 3 stages",
            figure("redis_cmds_per_job", 1),
        ),
        (
            "pipeline-throughput",
            "pipeline Redis CPU per message: post + 3 stages (µs)",
            figure("redis_cpu_us_per_job", 1),
        ),
    ]:
        if case in med:
            rows.append((title, [cell(case, p, render) for p in peers]))

    lines = ["| | " + " | ".join(peers) + " |", "|---|" + "---:|" * len(peers)]
    lines += ["| " + title + " | " + " | ".join(cells) + " |" for title, cells in rows]
    m = report["machine"]
    unknown = {"commit": "unknown", "tree": "unknown"}
    revisions = report.get("aqueue_revision", {"start": unknown, "end": unknown})
    start, end = revisions["start"], revisions["end"]
    revision = f"commit {start['commit']} (aqueue/ tree {start['tree']})"
    if start["tree"] != end["tree"] or "dirty" in start["tree"]:
        revision += f", then {end['commit']} (tree {end['tree']}): its code changed during the run"
    if "note" in revisions:
        revision += f" ({revisions['note']})"
    sizes = report["sizes"]
    round_trips = pipelines = pipeline_budget = ""
    if "roundtrip-tuned" in sizes:
        round_trips = (
            f"Round trips: up to {sizes['roundtrip-tuned']:,} in a row or "
            f"{report['roundtrip_seconds']:g} s; `n=` when fewer than 100 fitted. "
        )
    if "pipeline-throughput" in sizes or "pipeline-latency" in sizes:
        budget = report["pipeline_seconds"]
        pipeline_budget = (
            f"; a pipeline after {budget:g} s of posting, then as long again for the rest, "
            f"or after {budget:g} s one by one"
        )
        pipelines = (
            "Pipeline: a hop is stage k's handler to stage k+1's (see benchmarks/README.md); "
            "streaQ's stages share one queue. "
        )
    footer = [
        "",
        f"{report['started']}, {report['mode']} run, median of {report['repeats']} "
        f"(peers interleaved). {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; "
        f"Python {m['python']}; Redis {report['redis_version']} on loopback, no persistence; "
        f"aqueue at {revision}.",
        "",
        "`*`: measured on fewer jobs than the row says: a measurement stops posting, or draining, "
        f"after {report['seconds']:g} s{pipeline_budget} (the rate and per-job figures are over "
        "what it did). `n/a`: the peer has no such API or mode (see benchmarks/README.md). "
        + round_trips
        + pipelines
        + "Redis figures: `post` is one awaited post, `bulk post` its share of a call of 1,000 "
        "(the peers without a batch API: n/a), `run` the drain window; commands include those "
        "Lua scripts run.",
        *(f"- {note}" for note in dict.fromkeys(notes)),
    ]
    return "\n".join(lines + footer) + "\n"


# -- main -------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repetition")
    scenarios = ["enqueue", "drain", "sleep", "roundtrip", "pipeline"]
    parser.add_argument("--scenarios", nargs="+", choices=scenarios)
    parser.add_argument("--peers", nargs="+", choices=[p.name for p in PEERS])
    parser.add_argument("--repeats", type=int, help="default: 3 (1 with --smoke)")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG (no matplotlib venv)")
    parser.add_argument(
        "--out", type=Path, help="where results go (default: results/, or results/smoke/)"
    )
    parser.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="only rewrite latest.md/.png from a results file",
    )
    args = parser.parse_args()
    if args.render:
        write_outputs(json.loads(args.render.read_text()), args.render, plot=not args.no_plot)
        return 0

    sizes = SMOKE if args.smoke else FULL
    repeats = args.repeats or (1 if args.smoke else 3)
    specs = [p for p in PEERS if not args.peers or p.name in args.peers]
    selected = [c for c in cases(sizes) if not args.scenarios or c.scenario in args.scenarios]
    started = dt.datetime.now(dt.UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    out_dir: Path = args.out or (RESULTS / "smoke" if args.smoke else RESULTS)
    logs = RESULTS / "logs" / stamp
    logs.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()

    print(f"setting up {len(specs)} virtualenvs in {VENVS}", flush=True)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(ensure_venv, [*specs, *([] if args.no_plot else [PLOT])]))
    packages = {s.name: installed_packages(s) for s in specs}
    revision_at_start = aqueue_revision()

    runs: list[dict[str, Any]] = []
    with benchmark_server() as server:
        redis = RawRedis(server.url)
        redis_version = redis.info("server")["redis_version"]
        print(f"redis-server {redis_version} at {server.url}: {len(selected)} cases", flush=True)
        for case in selected:
            for rep in range(repeats):
                for spec in specs:
                    redis.call("FLUSHALL")  # the benchmark server only: nothing else uses it
                    log = logs / f"{case.key}-{spec.name}-{rep + 1}.log"
                    begun = time.monotonic()
                    result = run_driver(spec, case, server.url, log, timeout=300)
                    runs.append(
                        {"case": case.key, "peer": spec.name, "repeat": rep + 1, "result": result}
                    )
                    took = time.monotonic() - begun
                    print(
                        f"  [{time.monotonic() - t0:5.0f} s] {case.key:<18} {spec.name:<8} "
                        f"{summary(result)} ({took:.1f} s)",
                        flush=True,
                    )
        redis.call("FLUSHALL")
        redis.close()

    medians = {
        case.key: {
            spec.name: median_of(
                [r["result"] for r in runs if (r["case"], r["peer"]) == (case.key, spec.name)]
            )
            for spec in specs
        }
        for case in selected
    }
    report = {
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "duration_s": round(time.monotonic() - t0),
        "command": " ".join([".venv/bin/python", "benchmarks/run.py", *sys.argv[1:]]),
        "mode": "smoke" if args.smoke else "full",
        "repeats": repeats,
        "seconds": sizes.seconds,
        "roundtrip_seconds": sizes.roundtrip_seconds,
        "pipeline_seconds": sizes.pipeline_seconds,
        "sizes": {c.key: int(c.args[c.args.index("--jobs") + 1]) for c in selected},
        "machine": machine(),
        "redis_version": redis_version,
        "aqueue_revision": {"start": revision_at_start, "end": aqueue_revision()},
        "peers_run": [s.name for s in specs],
        "packages": packages,
        "medians": medians,
        "runs": runs,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{stamp}.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    write_outputs(report, out, plot=not args.no_plot)
    print(f"in {report['duration_s']} s")
    # A failed run is kept in the results either way; the exit status says so when it was
    # aqueue's, or any peer's in a smoke run (CI's check that every driver still works).
    failed = [r for r in runs if "error" in r["result"] and (args.smoke or r["peer"] == "aqueue")]
    for r in failed:
        print(f"FAILED: {r['case']} {r['peer']}: {r['result']['error']}", file=sys.stderr)
    return 1 if failed else 0


def write_outputs(report: dict[str, Any], source: Path, *, plot: bool) -> None:
    """latest.md (and latest.png) beside the results file `source`."""
    markdown = table(report)
    written = [source, source.parent / "latest.md"]
    written[1].write_text(markdown)
    if plot:
        chart = source.parent / "latest.png"
        subprocess.run(
            [str(PLOT.python), str(HERE / "plot.py"), str(source), str(chart)], check=True
        )
        written.append(chart)
    print(f"\n{markdown}\nwrote {', '.join(str(p) for p in written)}")


def summary(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"FAILED: {result['error'][:120]}"
    if "unsupported" in result:
        return f"n/a ({result['unsupported']})"
    if "p50_ms" in result:
        return (
            f"p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms, n={result['samples']}"
        )
    extra = " (capped)" if result.get("capped") else ""
    return f"{result['rate']:,.0f} jobs/s over {result['jobs']:,} jobs{extra}"


if __name__ == "__main__":
    sys.exit(main())

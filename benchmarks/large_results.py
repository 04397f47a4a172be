"""Large results end to end: the time, and the peak memory of worker, service and client.

    .venv/bin/python benchmarks/large_results.py                  # 50 MB and 500 MB
    .venv/bin/python benchmarks/large_results.py --sizes 50000000

For each size, a redis-server of its own (no persistence), and fresh processes, so that each
peak is that size's: an `aqueue worker` whose listener returns that many bytes
(`--max-result-bytes 1GiB`), an `aqueue http` service, and two clients, each a process of its
own: the Python one posts a job and awaits its result (`block_until_result`: post to value in
hand), then reads it again (`get_result`); the HTTP one posts with POST /jobs, waits for the
outcome on GET /jobs/{id}/events, then downloads GET /jobs/{id}/result.bin (streamed; the
client counts the bytes as they come, as a download to disk would). Peak RSS is each process's
VmHWM from /proc, read as it ends; Redis's is its used_memory_peak. Writes
results/large_results-<timestamp>.json and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import redis

from aqueue import Client
from aqueue._redis.server import free_port
from aqueue.testing import RedisServer
from benchmarks.run import PROJECT_PYTHON, RESULTS, aqueue_revision, machine

LISTENERS = """
from aqueue import Listeners

listeners = Listeners()


@listeners.listener
async def weights(size, ctx):
    return b"\\x5a" * size  # what a model's weights are to Redis: bytes
"""
QUEUE = "large"
MB = 1_000_000


def peak_rss_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


# -- the clients, each run as a process of its own (--client) ----------------------------------


async def python_client(url: str, size: int) -> dict[str, Any]:
    async with Client(QUEUE, redis_url=url) as client:
        began = time.perf_counter()
        job_id = await client.post(size, functions=["weights"])
        result = await client.block_until_result(job_id, timeout=600)
        awaited = time.perf_counter() - began
        assert len(result) == size, len(result)
        del result
        began = time.perf_counter()
        again = await client.get_result(job_id)
        read = time.perf_counter() - began
        assert len(again) == size
    return {"post_to_result_s": awaited, "get_result_s": read, "client_peak_rss_mb": peak_rss_mb()}


async def http_client(port: int, size: int) -> dict[str, Any]:
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as session:
        began = time.perf_counter()
        async with session.post("/jobs", json={"msg": size, "functions": ["weights"]}) as resp:
            assert resp.status == 201, await resp.text()
            url = (await resp.json())["url"]
        async with session.get(f"{url}/events") as resp:
            async for line in resp.content:
                if line.startswith(b"event: outcome"):
                    break
        done = time.perf_counter()
        received = 0
        async with session.get(f"{url}/result.bin") as resp:
            assert resp.status == 200, await resp.text()
            async for chunk in resp.content.iter_chunked(1 << 20):
                received += len(chunk)
        ended = time.perf_counter()
    assert received == size, received
    return {
        "post_to_result_s": ended - began,
        "download_s": ended - done,
        "client_peak_rss_mb": peak_rss_mb(),
    }


def run_client(kind: str, target: str, size: int) -> dict[str, Any]:
    """One client in a process of its own: its peak memory is its own."""
    out = subprocess.run(
        [
            str(PROJECT_PYTHON),
            "-m",
            "benchmarks.large_results",
            "--client",
            kind,
            target,
            "--sizes",
            str(size),
        ],
        stdout=subprocess.PIPE,  # its errors show
        text=True,
        check=True,
        timeout=900,
        cwd=Path(__file__).resolve().parent.parent,
    ).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


# -- one size ----------------------------------------------------------------------------------


def measure(size: int, home: Path) -> dict[str, Any]:
    server = RedisServer(home / f"redis-{size}", appendonly=False).start()
    (home / "big_listeners.py").write_text(LISTENERS)
    port = free_port()
    aqueue = [str(PROJECT_PYTHON), "-m", "aqueue"]
    common = ["--redis-url", server.url, "--queue", QUEUE, "--log-level", "WARNING"]
    worker = subprocess.Popen(
        [*aqueue, "worker", "big_listeners:listeners", *common, "--max-result-bytes", "1GiB"],
        cwd=home,
    )
    http = subprocess.Popen([*aqueue, "http", *common, "--bind", f"127.0.0.1:{port}"], cwd=home)
    try:
        deadline = time.monotonic() + 30
        while not listening(port) and time.monotonic() < deadline:
            time.sleep(0.1)
        python = run_client("python", server.url, size)
        over_http = run_client("http", str(port), size)
        figures = {
            "size_bytes": size,
            "python": python,
            "http": over_http,
            "worker_peak_rss_mb": peak_rss_mb(worker.pid),
            "http_service_peak_rss_mb": peak_rss_mb(http.pid),
            "redis_peak_mb": int(redis.Redis.from_url(server.url).info()["used_memory_peak"]) / MB,
        }
    finally:
        for process in (worker, http):
            process.terminate()
            process.wait(30)
        server.stop()
    return figures


def table(runs: list[dict[str, Any]]) -> str:
    lines = [
        "| result | Python: post → value | get_result | client peak | HTTP: post → bytes "
        "| download | client peak | worker peak | service peak | Redis peak |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        p, h = r["python"], r["http"]
        lines.append(
            f"| {r['size_bytes'] / MB:.0f} MB | {p['post_to_result_s']:.2f} s "
            f"| {p['get_result_s']:.2f} s | {p['client_peak_rss_mb']:.0f} MB "
            f"| {h['post_to_result_s']:.2f} s | {h['download_s']:.2f} s "
            f"| {h['client_peak_rss_mb']:.0f} MB | {r['worker_peak_rss_mb']:.0f} MB "
            f"| {r['http_service_peak_rss_mb']:.0f} MB | {r['redis_peak_mb']:.0f} MB |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[50 * MB, 500 * MB])
    parser.add_argument("--client", nargs=2, metavar=("KIND", "TARGET"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        kind, target = args.client
        if kind == "python":
            result = asyncio.run(python_client(target, args.sizes[0]))
        else:
            result = asyncio.run(http_client(int(target), args.sizes[0]))
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory() as folder:
        runs = [measure(size, Path(folder)) for size in args.sizes]
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    report = {
        "command": " ".join(sys.argv),
        "machine": machine(),
        "aqueue": aqueue_revision(),
        "runs": runs,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"large_results-{stamp}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(table(runs))


if __name__ == "__main__":
    main()

"""What `durable=True` costs: the p50 (and p90) of one awaited post, durable or not, with one
replica on loopback.

    .venv/bin/python benchmarks/durable.py [--posts 2000] [--rounds 5]

Starts a master (AOF, appendfsync everysec, as the suite's) and one replica on free loopback
ports, connected before timing. Each round times `--posts` awaited posts of each kind, the two
kinds alternating by round so that the machine's drift touches both alike. A durable post is
the script call and `WAIT 1 <timeout>` in one write on the client's own connection
(aqueue/_redis/direct.py): the round trip waits for the replica's acknowledgement, which it
sends at once when the master asks (REPLCONF GETACK). Prints the machine and versions.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
import redis

from aqueue import Client
from aqueue.testing import RedisServer


def started(home: Path) -> tuple[RedisServer, RedisServer]:
    master = RedisServer(home / "master", extra={"repl-diskless-sync-delay": "0"}).start()
    replica = RedisServer(home / "replica", extra={"replicaof": f"127.0.0.1 {master.port}"})
    replica.start()
    with redis.Redis(port=master.port) as r:
        while r.info("replication").get("slave0", {}).get("state") != "online":
            time.sleep(0.01)
    return master, replica


async def timed(client: Client, posts: int, durable: bool) -> list[float]:
    took = []
    for i in range(posts):
        start = time.perf_counter()
        await client.post(i, durable=durable)
        took.append(time.perf_counter() - start)
    return took


async def main(url: str, posts: int, rounds: int) -> dict[bool, list[float]]:
    found: dict[bool, list[float]] = {False: [], True: []}
    async with Client("durable-bench", redis_url=url) as client:
        await timed(client, 200, False)  # warm: connections, scripts loaded
        await timed(client, 200, True)
        for r in range(rounds):
            for durable in (r % 2 == 1, r % 2 == 0):
                found[durable] += await timed(client, posts, durable)
        await client.purge()
    return found


def _us(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1e6


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=2000, help="posts of each kind per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        master, replica = started(Path(home))
        try:
            found = anyio.run(main, master.url, args.posts, args.rounds)
            with redis.Redis(port=master.port) as r:
                version = r.info("server")["redis_version"]
        finally:
            replica.stop()
            master.stop()
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    print(f"# {machine}, Redis {version}, one replica on loopback; "
          f"{args.rounds} x {args.posts} posts each")  # fmt: skip
    plain, durable = (found[False], found[True])
    print(f"{'post':<16}{'p50 µs':>10}{'p90 µs':>10}")
    for name, values in (("plain", plain), ("durable=True", durable)):
        print(f"{name:<16}{_us(values, 50):>10.0f}{_us(values, 90):>10.0f}")
    print(f"durable/plain p50: {_us(durable, 50) / _us(plain, 50):.2f}x")

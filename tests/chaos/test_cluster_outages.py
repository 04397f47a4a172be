"""A cluster that stops answering, in whole or in part, under real daemons: every node paused
(SIGSTOP) or down (SIGKILL) when a daemon starts or while it serves, and a master down with
its replica mid-run. Each daemon stops on SIGTERM within its grace whatever the cluster
answers; a worker, a reaper and the HTTP service started while the cluster is down say it is
unreachable, keep trying, and serve once it is back; a client's calls meanwhile raise
RedisUnavailable."""

from __future__ import annotations

import contextlib
import os
import re
import signal
from collections.abc import Iterator, Sequence
from pathlib import Path

import aiohttp
import anyio
import anyio.to_thread
import pytest
import redis

from aqueue import Client, RedisUnavailable
from aqueue._http.service import HttpConfig
from aqueue._redis.keys import Keys
from aqueue.testing import RedisServer, until

from ..integration.test_cli import aqueue
from ..integration.test_http import Api, serving
from ..topologies import Cluster, _until
from .conftest import StartWorker, WorkerProcess, spawned, until_active
from .test_stop_whatever_redis_answers import DAEMONS

pytestmark = pytest.mark.chaos

CONNECTED = {"worker": "aqueue-worker-", "reaper": "aqueue-reaper-", "http": "aqueue-http-"}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A cluster of the test's own (3 masters, a replica each), to pause and kill."""
    nodes = Cluster(tmp_path / "cluster").start()
    yield nodes
    nodes.stop()


@contextlib.contextmanager
def _paused(nodes: Sequence[RedisServer]) -> Iterator[None]:
    for node in nodes:
        assert node.process is not None
        os.kill(node.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for node in nodes:
            assert node.process is not None
            os.kill(node.process.pid, signal.SIGCONT)


def _restart(cluster: Cluster, nodes: Sequence[RedisServer]) -> None:
    """Start `nodes` again (from their nodes.conf: the same ids and slots), until every node
    of the cluster says cluster_state:ok."""
    for node in nodes:
        node.start()

    def ok() -> bool:
        for node in cluster.nodes:
            with redis.Redis(port=node.port, socket_timeout=1, decode_responses=True) as r:
                if r.cluster("info")["cluster_state"] != "ok":
                    return False
        return True

    _until(ok, 20, "cluster_state:ok on every node again")


def _master_and_replica_of(cluster: Cluster, queue: str) -> list[RedisServer]:
    with redis.RedisCluster(host="127.0.0.1", port=cluster.masters[0].port) as client:
        master = client.get_node_from_key(Keys(queue).stats)
    pair = []
    for node in cluster.nodes:
        with redis.Redis(port=node.port, decode_responses=True) as server:
            info = server.info("replication")
        if node.port == master.port or info.get("master_port") == master.port:
            pair.append(node)
    assert len(pair) == 2, pair
    return pair


async def _connected(cluster: Cluster, daemon: str, process: WorkerProcess) -> bool:
    """Whether the daemon process has a connection, named as its kind names them, to a node."""
    name = f"{CONNECTED[daemon]}{process.pid}"

    def named() -> bool:
        for node in cluster.masters:
            with redis.Redis(port=node.port, decode_responses=True) as server:
                if any(c["name"] == name for c in server.client_list()):
                    return True
        return False

    return await anyio.to_thread.run_sync(named)


def _tcp_rows() -> list[list[str]]:
    rows: list[list[str]] = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            rows += [row.split() for row in f.readlines()[1:]]
    return rows


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1], 16)


def _unread_from(pid: int, ports: set[int]) -> int:
    """Connections of process `pid` to a (paused) Redis on one of `ports` holding bytes that
    Redis has not read. Only the daemon's: a replica's link to its paused master, or the
    cluster's bus, would hold some too."""
    sockets = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                sockets.add(target[len("socket:[") : -1])
    rows = _tcp_rows()
    # the daemon's ends: its local ports, on sockets connected to a node
    ends = {_port(row[1]) for row in rows if row[9] in sockets and _port(row[2]) in ports}
    return sum(
        1
        for row in rows
        if row[3] == "01"  # established (not the listening socket and its backlog)
        and _port(row[1]) in ports
        and _port(row[2]) in ends
        and int(row[4].split(":")[1], 16) > 0  # the node's receive queue
    )


async def _until_waiting_on(cluster: Cluster, process: WorkerProcess) -> None:
    """Until a connection of the daemon to a (paused) node holds bytes it has not read."""
    ports = {node.port for node in cluster.nodes}

    def waiting() -> bool:
        assert process.process.returncode is None, process.text()
        return _unread_from(process.pid, ports) >= 1

    await until(waiting, 20, interval=0.02)


def _http_port(process: WorkerProcess) -> int:
    found = re.search(r"HTTP service listening on 127\.0\.0\.1:(\d+)", process.text())
    assert found, process.text()
    return int(found.group(1))


# -- SIGTERM, whatever the cluster answers -------------------------------------------------------


@pytest.mark.parametrize("daemon", DAEMONS)
async def test_a_daemon_started_while_every_node_is_paused_stops_on_sigterm(
    cluster: Cluster, queue: str, tmp_path: Path, daemon: str
) -> None:
    args = [*DAEMONS[daemon], "--queue", queue, "--redis-url", cluster.url]
    with _paused(cluster.nodes):
        async with spawned(args, tmp_path / "daemon.log") as process:
            await _until_waiting_on(cluster, process)  # it asked a node, which never answers
            process.signal(signal.SIGTERM)
            assert await process.wait(timeout=15) == 0, process.text()  # the grace is 2 s


@pytest.mark.parametrize("daemon", DAEMONS)
async def test_a_serving_daemon_whose_every_node_stops_answering_stops_on_sigterm(
    cluster: Cluster, queue: str, tmp_path: Path, daemon: str
) -> None:
    """The HTTP service's request waiting on Redis is answered 503 within its shutdown
    timeout: aiohttp waited that long, asked the handler to stop (which one waiting on Redis
    does not hear), waited as long again, and dropped the connection unanswered."""
    args = [*DAEMONS[daemon], "--queue", queue, "--redis-url", cluster.url]
    answers: list[tuple[int, str]] = []
    async with spawned(args, tmp_path / "daemon.log") as process:
        await until(lambda: _connected(cluster, daemon, process), 20, what="a connection")
        if daemon == "http":  # (it connects before it listens)
            await process.wait_for_log("HTTP service listening")
        with _paused(cluster.nodes):
            async with anyio.create_task_group() as tg:
                if daemon == "http":  # a request of its own waits on Redis
                    url = f"http://127.0.0.1:{_http_port(process)}/queues"
                    tg.start_soon(_get, url, answers)
                await _until_waiting_on(cluster, process)
                process.signal(signal.SIGTERM)
                assert await process.wait(timeout=15) == 0, process.text()
    if daemon == "http":
        [(status, body)] = answers
        assert status == 503 and "shutting_down" in body, answers


async def _get(url: str, answers: list[tuple[int, str]]) -> None:
    async with aiohttp.ClientSession() as session:
        try:
            async with session.get(url) as answer:
                answers.append((answer.status, await answer.text()))
        except aiohttp.ClientError as exc:
            answers.append((0, repr(exc)))  # dropped unanswered


async def test_a_worker_running_a_job_whose_every_node_stops_answering_stops_after_its_grace(
    cluster: Cluster, queue: str, start_worker: StartWorker
) -> None:
    """Its outcome and its hand-back wait on the cluster for ever: the stop's deadline cuts
    them (the grace is 2 s, the wrap-up 5 s)."""
    async with Client(queue, redis_url=cluster.url) as client:
        async with start_worker(queue, cluster.url, "--no-callbacks") as worker:
            await until_active(client, await client.post({"seconds": 60}, functions=["slow"]))
            with _paused(cluster.nodes):
                await _until_waiting_on(cluster, worker)
                worker.signal(signal.SIGTERM)
                assert await worker.wait(timeout=20) == 0, worker.text()
    assert "stopped at its deadline" in worker.text()


# -- down, and back ------------------------------------------------------------------------------


async def test_a_worker_started_while_every_node_is_down_says_so_and_serves_once_they_are_back(
    cluster: Cluster, queue: str, tmp_path: Path
) -> None:
    """It died at start with redis-py's RedisClusterUnreachableError, which is no RedisError."""
    await anyio.to_thread.run_sync(_kill, cluster.nodes)
    args = [*DAEMONS["worker"], "--queue", queue, "--redis-url", cluster.url]
    async with spawned(args, tmp_path / "worker.log") as worker:
        await worker.wait_for_log("waits for Redis")
        assert "Redis unreachable" in worker.text() and "Traceback" not in worker.text()
        await anyio.to_thread.run_sync(_restart, cluster, cluster.nodes)
        await worker.wait_for_log("serving queue")
        async with Client(queue, redis_url=cluster.url) as client:
            job_id = await client.post({"seconds": 0}, functions=["slow"])
            with anyio.fail_after(10):
                assert (await client.block_until_result(job_id))["attempt"] == 1


async def test_the_http_service_started_while_every_node_is_down_answers_once_they_are_back(
    cluster: Cluster, queue: str, tmp_path: Path
) -> None:
    await anyio.to_thread.run_sync(_kill, cluster.nodes)
    args = [*DAEMONS["http"], "--queue", queue, "--redis-url", cluster.url]
    async with spawned(args, tmp_path / "http.log") as http, aiohttp.ClientSession() as web:
        await http.wait_for_log("HTTP service listening")
        assert "starting while Redis is unavailable" in http.text(), http.text()
        base = f"http://127.0.0.1:{_http_port(http)}"
        async with web.get(f"{base}/readyz") as ready:
            assert ready.status == 503
        async with web.post(f"{base}/jobs", json={"msg": 1}) as refused:
            assert refused.status == 503 and "unreachable" in await refused.text()
        await anyio.to_thread.run_sync(_restart, cluster, cluster.nodes)

        async def ready_again() -> bool:
            async with web.get(f"{base}/readyz") as ready:
                return ready.status == 200

        await until(ready_again, 20, interval=0.1)
        async with web.post(f"{base}/jobs", json={"msg": 1}) as created:
            assert created.status == 201, await created.text()


async def test_a_client_s_calls_while_the_queue_s_master_and_replica_are_down_raise_unavailable(
    cluster: Cluster, queue: str, tmp_path: Path
) -> None:
    """...and a worker of the queue rides it out, and runs the jobs once the two are back."""
    pair = await anyio.to_thread.run_sync(_master_and_replica_of, cluster, queue)
    args = [*DAEMONS["worker"], "--queue", queue, "--redis-url", cluster.url]
    async with (
        spawned(args, tmp_path / "worker.log") as worker,
        Client(queue, redis_url=cluster.url) as client,
    ):
        await worker.wait_for_log("serving queue")
        first = await client.post({"seconds": 0}, functions=["slow"])
        with anyio.fail_after(10):
            await client.block_until_result(first)
        await anyio.to_thread.run_sync(_kill, pair)
        with anyio.fail_after(20), pytest.raises(RedisUnavailable):
            await client.post({"seconds": 0}, functions=["slow"])
        await worker.wait_for_log("heartbeat failed", "claim failed")
        await anyio.to_thread.run_sync(_restart, cluster, pair)

        async def posted() -> str:
            try:
                return await client.post({"seconds": 0}, functions=["slow"])
            except RedisUnavailable:
                return ""  # not yet: the slot's master is still being found again

        again = await until(posted, 20, interval=0.2)
        with anyio.fail_after(20):
            assert (await client.block_until_result(again))["attempt"] == 1
        assert worker.process.returncode is None


def _kill(nodes: Sequence[RedisServer]) -> None:
    for node in nodes:
        node.kill()


async def test_a_reaper_started_while_every_node_is_down_says_so_and_reaps_once_they_are_back(
    cluster: Cluster, queue: str, tmp_path: Path
) -> None:
    """It exited at start (status 1, a traceback), on one node as on a cluster, where the
    worker and HTTP daemons keep trying."""
    await anyio.to_thread.run_sync(_kill, cluster.nodes)
    args = [*DAEMONS["reaper"], "--queue", queue, "--redis-url", cluster.url]
    async with spawned(args, tmp_path / "reaper.log") as reaper:
        await reaper.wait_for_log("Redis unreachable")
        assert "Traceback" not in reaper.text(), reaper.text()
        await anyio.to_thread.run_sync(_restart, cluster, cluster.nodes)
        async with Client(queue, redis_url=cluster.url) as client:
            job_id = await client.post({"seconds": 0}, functions=["slow"])
            claim = await client.store.claim("gone", 100, 1, ["slow"])  # a lease that lapses
            assert [job.id for job in claim.jobs] == [job_id]

            async def requeued() -> bool:
                return (await client.counts())["queued"] == 1

            await until(requeued, 20, what="the lapsed lease requeued by the reaper")
        assert reaper.process.returncode is None


async def test_status_of_queues_on_the_masters_up_answers_while_the_default_queue_s_is_down(
    cluster: Cluster, queue: str
) -> None:
    """With cluster-require-full-coverage no, the queues of the other masters run on. `aqueue
    status --queue Q` opened on the queue `default`, whose master's INFO it read first, and
    failed whatever Q's master."""
    up = await anyio.to_thread.run_sync(_one_master_down, cluster, queue)
    async with Client(up, redis_url=cluster.url) as client:

        async def posted() -> str:
            try:
                return await client.post(1)
            except RedisUnavailable:
                return ""  # the cluster noting the master down

        await until(posted, 20, interval=0.1)
    code, out, err = await aqueue("status", "--redis-url", cluster.url, "--queue", up)
    assert code == 2 and up in out, err  # 2: a job waits and no worker serves it


def _one_master_down(cluster: Cluster, queue: str) -> str:
    """The master of the queue `default` and its replica killed, the cluster told to serve
    the slots it still can; and a queue on another master."""
    for node in cluster.nodes:
        with redis.Redis(port=node.port) as r:
            r.config_set("cluster-require-full-coverage", "no")
    down = _master_and_replica_of(cluster, "default")
    up = _queue_not_on(cluster, down[0], queue)
    _kill(down)
    return up


def _queue_not_on(cluster: Cluster, master: RedisServer, prefix: str) -> str:
    with redis.RedisCluster(host="127.0.0.1", port=cluster.masters[0].port) as client:
        names = (f"{prefix}-{n}" for n in range(100))
        return next(q for q in names if client.get_node_from_key(Keys(q).stats).port != master.port)


async def test_the_http_service_is_not_ready_while_the_cluster_is_down(
    cluster: Cluster, queue: str
) -> None:
    """A master down with its replica: under cluster-require-full-coverage yes (the default)
    every node refuses every command ('The cluster is down'), and answers PING, which was all
    /readyz asked: it said ready."""
    down = await anyio.to_thread.run_sync(_master_and_replica_of, cluster, queue)
    elsewhere = await anyio.to_thread.run_sync(_queue_not_on, cluster, down[0], queue)
    config = HttpConfig(port=0, redis_url=cluster.url, queue=queue, keepalive=0.3)
    async with serving(config) as api:
        await api.json("GET", "/readyz", 200)
        await anyio.to_thread.run_sync(_kill, down)

        async def refused() -> bool:  # once the other masters count it failed
            async with api.session.get(f"/queues/{elsewhere}") as answer:
                return answer.status == 503 and "cluster is down" in await answer.text()

        await until(refused, 20, interval=0.1)
        problem = await api.json("GET", "/readyz", 503)
        assert "cluster_state:fail" in problem["detail"], problem
        await anyio.to_thread.run_sync(_restart, cluster, down)
        await until(lambda: _ready(api), 20, interval=0.1)


async def _ready(api: Api) -> bool:
    async with api.session.get("/readyz") as answer:
        return answer.status == 200

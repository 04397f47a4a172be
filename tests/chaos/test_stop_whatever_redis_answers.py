"""Every daemon stops on SIGTERM whatever its Redis answers: errors to every script (a cluster
node that does not own the queue's slot answers PING and refuses the rest), or nothing at all
(a paused server); and a second SIGTERM stops a worker at once."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from aqueue import Client
from aqueue.testing import RedisServer, until

from .conftest import FAST, StartWorker, WorkerProcess, spawned, until_active

pytestmark = pytest.mark.chaos

# PING, SUBSCRIBE and the plain reads work; every EVAL/EVALSHA is refused (NOPERM)
REFUSES_SCRIPTS = {"user": "default on nopass ~* &* +@all -@scripting"}

DAEMONS = {
    "worker": ["worker", "tests.chaos.listeners:listeners", *FAST],
    "reaper": ["reaper", "--reaper-interval", "0.1"],
    "http": ["http", "--bind", "127.0.0.1:0"],
}


def _unread_commands(port: int) -> int:
    """Connections to the local Redis on `port` holding bytes it has not read (it is paused)."""
    pending = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for row in f.readlines()[1:]:
                _, local, _, state, queues, *_ = row.split()
                established = state == "01"  # not the listening socket (its backlog)
                if established and int(local.rsplit(":", 1)[1], 16) == port:
                    pending += int(queues.split(":")[1], 16) > 0
    return pending


async def _until_unread(port: int, at_least: int, daemon: WorkerProcess) -> None:
    def unread() -> bool:
        assert daemon.process.returncode is None, daemon.text()
        return _unread_commands(port) >= at_least

    await until(unread, 20, interval=0.02)


@contextmanager
def _paused(server: RedisServer) -> Iterator[None]:
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.process.pid, signal.SIGCONT)


@pytest.fixture
def refusing_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "refusing", extra=REFUSES_SCRIPTS).start()
    yield server
    server.stop()


@pytest.mark.parametrize("daemon", DAEMONS)
async def test_a_daemon_whose_redis_refuses_every_script_stops_on_sigterm(
    refusing_redis: RedisServer, queue: str, tmp_path: Path, daemon: str
) -> None:
    args = [*DAEMONS[daemon], "--queue", queue, "--redis-url", refusing_redis.url]
    async with spawned(args, tmp_path / "daemon.log") as process:
        # it has met the refusal (the HTTP service calls no script until asked to)
        await process.wait_for_log("refused the command", "HTTP service listening")
        process.signal(signal.SIGTERM)
        assert await process.wait(timeout=15) == 0, process.text()  # the grace is 2 s


@pytest.mark.parametrize("daemon", DAEMONS)
async def test_a_daemon_whose_redis_does_not_answer_stops_on_sigterm(
    private_redis: RedisServer, queue: str, tmp_path: Path, daemon: str
) -> None:
    args = [*DAEMONS[daemon], "--queue", queue, "--redis-url", private_redis.url]
    with _paused(private_redis):
        async with spawned(args, tmp_path / "daemon.log") as process:
            await _until_unread(private_redis.port, 1, process)  # it waits on Redis
            process.signal(signal.SIGTERM)
            assert await process.wait(timeout=15) == 0, process.text()


async def test_a_serving_worker_whose_redis_stops_answering_stops_after_its_grace(
    private_redis: RedisServer, queue: str, start_worker: StartWorker
) -> None:
    """Its claim (shielded, so as never to be abandoned half-read) and the outcomes it would
    record wait on Redis for ever: the stop's deadline cuts them."""
    async with Client(queue, redis_url=private_redis.url) as client:
        only = ("--no-reaper", "--no-callbacks")  # the claim and the heartbeat: 2 waits
        async with start_worker(queue, private_redis.url, *only) as worker:
            await until_active(client, await client.post({"seconds": 60}, functions=["slow"]))
            with _paused(private_redis):
                await _until_unread(private_redis.port, 2, worker)
                worker.signal(signal.SIGTERM)
                assert await worker.wait(timeout=20) == 0, worker.text()  # grace 2 s + 5 s
    assert "stopped at its deadline" in worker.text()


async def test_a_second_sigterm_stops_a_worker_whose_redis_stopped_answering_at_once(
    private_redis: RedisServer, queue: str, start_worker: StartWorker
) -> None:
    async with Client(queue, redis_url=private_redis.url) as client:
        async with start_worker(queue, private_redis.url, "--grace", "120") as worker:
            await until_active(client, await client.post({"seconds": 300}, functions=["slow"]))
            with _paused(private_redis):
                await _until_unread(private_redis.port, 1, worker)
                worker.signal(signal.SIGTERM)
                await worker.wait_for_log("draining")
                worker.signal(signal.SIGTERM)
                assert await worker.wait(timeout=20) == 0, worker.text()  # not the 120 s

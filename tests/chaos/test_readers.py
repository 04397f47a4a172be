"""Readers: `aqueue worker --processes N` runs N reader processes under one supervising daemon
(one READY to systemd); a reader SIGKILLed is started again and its job completes; each
reader runs its stateful handler's setup; SIGTERM drains them all. With MIN..MAX the readers
follow the backlog, 0 -> MAX -> 0."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import anyio
import pytest

from aqueue import Client
from aqueue._redis.records import worker_infos
from aqueue.testing import until

from ..processes import aqueue_process
from .conftest import FAST

pytestmark = pytest.mark.chaos

LISTENERS = "tests.chaos.listeners:listeners"


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sink:
        sink.bind(address)
        sink.setblocking(False)
        yield address, sink


def _heard(sink: socket.socket, notes: list[str]) -> list[str]:
    while True:
        try:
            notes.append(sink.recv(4096).decode())
        except BlockingIOError:
            return notes


async def _readers(client: Client) -> set[int]:
    """The pids of the live workers of the client's queue."""
    infos = worker_infos(await client.store.live_workers())
    return {int(i["pid"]) for i in infos if i.get("queue") == client.queue}


def _at_least(client: Client, count: int, without: int = 0) -> Callable[[], Awaitable[set[int]]]:
    async def found() -> set[int]:
        pids = await _readers(client) - {without}
        return pids if len(pids) >= count else set()

    return found


def _slow(n: int, seconds: float) -> list[dict[str, float]]:
    return [{"seconds": seconds, "n": i} for i in range(n)]


async def test_n_readers_under_one_daemon_are_restarted_after_a_sigkill_and_drained_on_sigterm(
    redis_url: str,
    queue: str,
    tmp_path: Path,
    notify_socket: tuple[str, socket.socket],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    address, sink = notify_socket
    marks = tmp_path / "lifecycle.log"
    monkeypatch.setenv("AQUEUE_TEST_LIFECYCLE", str(marks))  # the readers inherit it
    args = ["worker", LISTENERS, "--queue", queue, "--redis-url", redis_url, *FAST,
            "--concurrency", "1", "--processes", "3"]  # fmt: skip
    env = {"NOTIFY_SOCKET": address}
    notes: list[str] = []
    async with (
        Client(queue, redis_url=redis_url) as client,
        aqueue_process(args, log=tmp_path / "daemon.log", env=env) as daemon,
    ):
        await until(lambda: any("READY=1" in n for n in _heard(sink, notes)), 30)
        first = await until(_at_least(client, 3), 30)
        ids = await client.post_many(_slow(12, 0.2), functions=["slow"])
        await anyio.sleep(0.3)  # the readers have taken some
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        results = [await client.block_until_result(i, timeout=30) for i in ids]
        assert [r["n"] for r in results] == list(range(12))  # its job too, reaped and rerun
        assert len({r["pid"] for r in results}) >= 3  # the work was spread over readers
        later = await until(_at_least(client, 3, without=victim), 30)  # one in its place
        assert victim not in later
        daemon.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            assert await daemon.wait() == 0
        assert await _readers(client) == set()
    assert sum("READY=1" in n.split("\n") for n in _heard(sink, notes)) == 1  # the daemon's
    setups = [line.split()[0] for line in marks.read_text().splitlines() if line.endswith("setup")]
    assert len(setups) == len(set(setups)) == 4  # once in each reader, the new one too


async def test_readers_follow_the_backlog_from_none_to_max_and_back(
    redis_url: str, queue: str, tmp_path: Path
) -> None:
    args = ["worker", LISTENERS, "--queue", queue, "--redis-url", redis_url, *FAST,
            "--concurrency", "1", "--processes", "0..3", "--reader-idle", "1"]  # fmt: skip
    async with (
        Client(queue, redis_url=redis_url) as client,
        aqueue_process(args, log=tmp_path / "daemon.log") as daemon,
    ):
        await anyio.sleep(1.5)  # a tick or two of the supervisor's
        assert await _readers(client) == set()  # no backlog: no reader
        ids = await client.post_many(_slow(30, 0.3), functions=["slow"])
        await until(_at_least(client, 3), 30)  # up to MAX
        for job_id in ids:
            await client.block_until_result(job_id, timeout=60)

        async def none_left() -> bool:
            return not await _readers(client)

        await until(none_left, 30)  # idle: back to MIN, one after another
        daemon.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            assert await daemon.wait() == 0

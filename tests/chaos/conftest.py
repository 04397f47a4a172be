"""Real worker processes that the chaos tests start, kill, pause and resume."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, aclosing, asynccontextmanager
from pathlib import Path

import anyio
import pytest
from anyio.abc import Process

from aqueue import Client
from aqueue.testing import until

from ..processes import aqueue_process
from ..topologies import Cluster

FAST = ["--lease", "0.6", "--heartbeat", "0.1", "--reaper-interval", "0.1",
        "--idle-wait", "0.2", "--grace", "2"]  # fmt: skip


class WorkerProcess:
    def __init__(self, process: Process, log: Path) -> None:
        self.process = process
        self.log = log

    @property
    def pid(self) -> int:
        return self.process.pid

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    async def wait_for_log(self, *needles: str, timeout: float = 20) -> str:
        """Wait until the log holds one of `needles`; return the one found."""

        def found() -> list[str]:  # the child's log is the condition
            hits = [n for n in needles if n in self.text()]
            if hits or self.process.returncode is None:
                return hits
            raise AssertionError(f"worker exited ({self.process.returncode}):\n{self.text()}")

        hits = await until(found, timeout, interval=0.02, what=f"{needles} in {self.log}")
        return hits[0]

    def signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    async def wait(self, timeout: float = 20) -> int:
        with anyio.fail_after(timeout):
            return await self.process.wait()


async def until_active(client: Client, job_id: str) -> None:
    """Until the job's listener reports progress (the chaos listeners do as they start)."""
    with anyio.fail_after(20):
        async with aclosing(client.watch(job_id)) as events:
            async for event in events:
                if event.progress is not None:
                    return


@pytest.fixture
def private_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A cluster of the test's own (3 masters, a replica each), for tests that kill its
    nodes, fail them over or move its slots."""
    cluster = Cluster(tmp_path / "cluster").start()
    yield cluster
    cluster.stop()


StartWorker = Callable[..., AbstractAsyncContextManager[WorkerProcess]]


@pytest.fixture
def start_worker(tmp_path: Path) -> StartWorker:
    """`async with start_worker(queue, url) as w:` — a ready worker process, killed after."""
    counter = 0

    @asynccontextmanager
    async def start(queue: str, url: str, *extra: str) -> AsyncIterator[WorkerProcess]:
        nonlocal counter
        counter += 1
        args = ["worker", "tests.chaos.listeners:listeners", "--queue", queue, "--redis-url", url]
        async with spawned([*args, *FAST, *extra], tmp_path / f"worker-{counter}.log") as worker:
            await worker.wait_for_log("serving queue")
            yield worker

    return start


@asynccontextmanager
async def spawned(args: list[str], log: Path) -> AsyncIterator[WorkerProcess]:
    """`python -m aqueue <args>` with its output in `log`; killed (even if paused) after."""
    async with aqueue_process(args, log=log) as process:
        yield WorkerProcess(process, log)

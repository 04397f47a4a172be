"""The jobs a worker holds, and the heartbeat that renews all their leases in one call.

A job is held from its claim (or push) until its outcome is recorded: its lease is the attempt
this worker runs. While it is on the worker (waiting in the inbox, or running) it also has a
`Running` record, with the cancel scope that a lost lease or a cancel uses to stop it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import anyio
from anyio.abc import TaskStatus

from aqueue._redis.backoff import Backoff
from aqueue._redis.calls import Claimed
from aqueue._redis.store import Store
from aqueue.errors import RedisUnavailable

log = logging.getLogger(__name__)


@dataclass
class Running:
    job: Claimed
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    lost: bool = False  # reclaimed or cancelled elsewhere: write nothing
    lends: int = 0  # its waits on other jobs now: its slot is lent out while there are any
    holds_place: bool = True  # its claim place (given up for good when it lends its slot)
    thread_ended: threading.Event | None = None  # a plain function's thread, left running
    waiting: bool = True  # in the inbox: claimed, not yet taken by a slot
    started: float = field(default_factory=time.time)


class Held:
    """The jobs this worker holds. Made inside the event loop, when the run starts."""

    def __init__(self) -> None:
        self.leases: dict[str, int] = {}  # job id -> attempt, until its outcome is recorded
        self.running: dict[str, Running] = {}  # those on this worker: in the inbox or running
        self.changed = anyio.Event()  # a lease ended, or a job lent its slot
        self.stopping = False  # the worker stops: a job handed to it now goes straight back

    def let_go(self, job_id: str, attempt: int | None) -> None:
        """The lease of `attempt` of the job (None: of whichever) is no longer this worker's."""
        if attempt is None or self.leases.get(job_id) == attempt:
            self.leases.pop(job_id, None)
            self.changed.set()

    async def until(self, done: Callable[[], bool]) -> None:
        """Wait until `done()`, looked at again whenever a lease ends or a job lends its slot."""
        while not done():
            self.changed = anyio.Event()
            await self.changed.wait()

    def lose(self, job_id: str, attempt: int | None = None) -> None:
        """This worker no longer holds the job (its `attempt`; None: whichever it runs): stop
        running it and write nothing for it."""
        if attempt is not None and self.leases.get(job_id, attempt) != attempt:
            return  # that attempt ended here, and the job's next one is ours
        running = self.running.get(job_id)
        if running is not None:
            running.lost = True
            running.scope.cancel()
            log.warning("job %s is no longer ours; cancelled", job_id, extra={"job_id": job_id})
        else:
            self.let_go(job_id, None)

    def started(self) -> list[Running]:
        """The jobs running now (not those prefetched, waiting for a slot)."""
        return [running for running in self.running.values() if not running.waiting]

    async def renew_forever(
        self,
        store: Store,
        worker_id: str,
        lease_ms: int,
        interval: float,
        info: Callable[[], bytes],
        listeners: Sequence[str],
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Every `interval`, renew every lease (and the worker's `info`); lose the jobs this
        worker no longer holds. Started once the first beat went through."""
        started = False
        backoff = Backoff(cap=interval)
        while True:
            sent = dict(self.leases)  # job id -> the attempt this beat asks about
            try:
                lost = await store.heartbeat(
                    worker_id, lease_ms, info(), list(sent.items()), listeners
                )
            except RedisUnavailable as exc:
                log.warning("heartbeat failed, retrying in %.2f s: %s", backoff.delay, exc)
                await backoff.sleep()
                continue
            backoff.reset()
            for job_id in lost:  # the attempt it asked about: a later one may have begun since
                self.lose(job_id, sent.get(job_id))
            if not started:
                task_status.started()
                started = True
            await anyio.sleep(interval)

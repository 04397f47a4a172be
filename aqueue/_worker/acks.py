"""Outcomes on their way to Redis: recorded by one loop, in batches when many finish together."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import anyio

from aqueue._redis.backoff import Backoff
from aqueue._redis.calls import Outcome
from aqueue._redis.store import Store
from aqueue._worker.stopping import StopClock
from aqueue.errors import RedisUnavailable

log = logging.getLogger(__name__)


class Acks:
    """Made inside the event loop, when the run starts. `sent` hears of each batch recorded,
    with which outcomes Redis accepted."""

    def __init__(
        self,
        worker_id: str,
        clock: StopClock,
        sent: Callable[[Sequence[Outcome], list[bool]], None],
        stopping: Callable[[], bool],
    ) -> None:
        self.worker_id = worker_id
        self.clock = clock
        self.sent = sent
        self.stopping = stopping  # then the final send takes what is left (see send)
        self.pending: list[Outcome] = []
        self.ready = anyio.Event()

    def record(self, outcome: Outcome) -> None:
        """For the ack loop, which records outcomes in batches."""
        self.pending.append(outcome)
        self.ready.set()

    async def loop(self, store: Store) -> None:
        while True:
            await self.ready.wait()
            self.ready = anyio.Event()
            await self.send(store)

    async def send(self, store: Store, *, final: bool = False) -> None:
        """Record pending outcomes; retried while Redis is away (when stopping, until the
        stop's deadline: after that the reaper recovers those jobs)."""
        backoff = Backoff()
        with self.clock.shielded():
            while self.pending:
                batch, self.pending = self.pending, []
                try:
                    accepted = await store.finish(self.worker_id, batch)
                except RedisUnavailable as exc:
                    self.pending[:0] = batch
                    if self.stopping() and not final:
                        return  # the final send takes them, for at most the grace period
                    log.warning("recording outcomes failed, retrying: %s", exc)
                    await backoff.sleep()
                    continue
                self.sent(batch, accepted)

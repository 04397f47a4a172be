"""Outcomes on their way to Redis: recorded by one loop, in batches when many finish together."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import anyio

from aqueue._redis.backoff import Backoff
from aqueue._redis.calls import Outcome
from aqueue._redis.store import Store
from aqueue._worker.stopping import StopClock
from aqueue.config import Durability
from aqueue.errors import NotDurable, RedisUnavailable

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
        durable: Durability | None = None,
    ) -> None:
        self.worker_id = worker_id
        self.durable = durable  # what every finish waits for (WorkerConfig.durability)
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
        if self.durable is not None:  # one the server cannot confirm stops the worker now
            await store.check_durable(self.durable)
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
                shortfall = None
                try:
                    if self.durable is None:
                        accepted = await store.finish(self.worker_id, batch)
                    else:
                        accepted, shortfall = await store.finish_durably(
                            self.worker_id, batch, self.durable
                        )
                except RedisUnavailable as exc:
                    self.pending[:0] = batch
                    if self.stopping() and not final:
                        return  # the final send takes them, for at most the grace period
                    log.warning("recording outcomes failed, retrying: %s", exc)
                    await backoff.sleep()
                    continue
                self.sent(batch, accepted)
                if shortfall is not None:
                    await self._confirm(store, shortfall, final)

    async def _confirm(self, store: Store, shortfall: NotDurable, final: bool) -> None:
        """Wait again for outcomes recorded short of durable, never recording them twice:
        until met, or until more outcomes come (their finish's wait covers these too), or
        the worker stops (the final send waits, for at most the rest of the grace)."""
        assert self.durable is not None
        backoff = Backoff()
        while True:
            log.warning("outcomes recorded but %s; waiting again", shortfall)
            if self.pending or (self.stopping() and not final):
                return
            await backoff.sleep()
            try:
                found = await store.confirm(self.durable, shortfall.job_ids)
            except RedisUnavailable as exc:
                log.warning("waiting for durability failed, retrying: %s", exc)
                continue
            if found is None:
                log.info("outcomes of %d job(s) now durable", len(shortfall.job_ids))
                return
            shortfall = found

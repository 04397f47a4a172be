"""The claim loop, and the jobs posts push to this worker while it waits for work.

The loop takes as many ready jobs as there are free places (`capacity.py`), in one script call,
into the inbox; prefetched jobs wait there, so no slot waits on Redis (as many as finish during
one claim: see prefetch.py). A short claim leaves the worker registered as waiting: posts then
hand it jobs directly (over its push channel), leased to it, with no claim round trip. When the
claim says suspects wait (jobs whose worker died: see reap.lua), it drains and runs them one at
a time, each alone.
"""

from __future__ import annotations

import logging
import time

import anyio
import anyio.lowlevel

from aqueue._redis.backoff import Backoff
from aqueue._redis.calls import Claimed
from aqueue._redis.store import Store
from aqueue._worker.acks import Acks
from aqueue._worker.leases import Running
from aqueue._worker.shared import Shared
from aqueue._worker.stopping import StopClock
from aqueue.config import WorkerConfig
from aqueue.errors import RedisUnavailable

log = logging.getLogger(__name__)


class Claims:
    """Made inside the event loop, when the run starts."""

    def __init__(
        self,
        shared: Shared,
        config: WorkerConfig,
        listeners: tuple[str, ...],
        acks: Acks,
        clock: StopClock,
    ) -> None:
        self.worker_id = shared.worker_id
        self.config = config
        self.listeners = listeners
        self.capacity = shared.capacity
        self.prefetch = shared.prefetch
        self.held = shared.held
        self.inbox_in = shared.inbox_in
        self.acks = acks
        self.outcomes = shared.outcomes
        self.clock = clock
        self.lease_ms = int(config.lease * 1000)
        self.wake = anyio.Event()  # new work, an outcome that may make some ready: look again
        self.place_freed = anyio.Event()  # set when a waiting claim is handed its place
        self._suspects_wait = False  # the last claim said: drain, then claim suspects alone
        self._alone: Running | None = None  # the suspect running alone now

    async def loop(self, store: Store, burst: bool) -> None:
        """Claim until cancelled (the worker stops) or, with `burst`, until nothing is left."""
        backoff = Backoff()
        capacity = self.capacity
        while True:
            # Suspects wait: should one kill this worker, nothing else may share the blame.
            alone = self._suspects_wait
            if alone:
                await self.held.until(lambda: not self.held.leases)
            capacity.park(self.prefetch.now)
            await self._take_place()
            await anyio.lowlevel.checkpoint()  # let finishing jobs free their places first
            taken = 1 if alone else 1 + capacity.take_more(self.config.claim_batch - 1)
            self.wake = anyio.Event()
            try:
                # a claim is never abandoned half-read, but at the stop's deadline
                with self.clock.shielded() as claiming:
                    if alone:
                        claim = await store.claim_alone(
                            self.worker_id, self.lease_ms, self.listeners
                        )
                    else:
                        began = time.monotonic()
                        claim = await store.claim(
                            self.worker_id, self.lease_ms, taken, self.listeners
                        )
                        self.prefetch.claim_took(time.monotonic() - began)
                if claiming.cancelled_caught:
                    capacity.claimed(taken, 0)
                    return
            except RedisUnavailable as exc:
                capacity.claimed(taken, 0)
                log.warning("claim failed, retrying in %.2f s: %s", backoff.delay, exc)
                await backoff.sleep()
                continue
            backoff.reset()
            capacity.claimed(taken, len(claim.jobs))
            for job in claim.jobs:
                self.to_inbox(job)
            self._suspects_wait = claim.suspects
            if alone:
                if claim.jobs:  # nothing more until it ends, or lends its slot (see below)
                    self._alone = self.held.running.get(claim.jobs[0].id)
                    try:
                        await self.held.until(lambda: not self._runs_alone())
                    finally:
                        self._alone = None
                continue
            if claim.full or claim.suspects:
                continue  # there may be more ready
            # Short: the lanes are empty for now. Wait for a post, requeue or outcome to wake
            # us, or for the next scheduled job: claiming again at once would find nothing.
            if burst and not self.held.running and not self.held.leases:
                return
            wait = self.config.idle_wait
            if claim.next_due_ms is not None:
                wait = min(wait, max(0.0, (claim.next_due_ms - claim.now_ms) / 1000))
            with anyio.move_on_after(wait):
                await self.wake.wait()

    async def _take_place(self) -> None:
        """A claim's first place: free now, or the next one a job gives up."""
        await anyio.lowlevel.checkpoint_if_cancelled()
        capacity = self.capacity
        if capacity.take_place():
            await anyio.lowlevel.cancel_shielded_checkpoint()  # others run first, as they would
            return
        try:
            while capacity.awaiting:
                self.place_freed = anyio.Event()
                await self.place_freed.wait()
        except BaseException:  # cancelled: a place handed over meanwhile is free again
            capacity.stop_awaiting()
            raise

    def _runs_alone(self) -> bool:
        """Is a suspect running alone here? Not once it waits on another job: it lends its
        slot then, which other jobs must be able to take (else one worker would deadlock)."""
        alone = self._alone
        return (
            alone is not None
            and alone.holds_place
            and self.held.leases.get(alone.job.id) == alone.job.attempt
        )

    def to_inbox(self, job: Claimed) -> None:
        """A job leased to this worker (its claim place taken) waits for a slot; once the
        worker is stopping (a claim can land after stop()), it goes straight back."""
        held = self.held
        older = held.running.get(job.id)
        if older is not None and older.job.attempt != job.attempt:
            # Its lease lapsed here (this worker was frozen, say) and it came back as a new
            # attempt: the old one is no longer ours, and writes nothing.
            older.lost = True
            older.scope.cancel()
        held.leases[job.id] = job.attempt
        if held.stopping or self._runs_alone():  # (a post handed it over as a suspect began)
            if self.capacity.give_up():
                self.place_freed.set()
            self.acks.record(self.outcomes.handed_back(job))
            return
        running = held.running[job.id] = Running(job)
        self.inbox_in.send_nowait(running)

    def take_pushed(self, jobs: list[Claimed]) -> None:
        """Jobs a post handed to this worker while it waited: already leased to it."""
        for job in jobs:
            self.capacity.pushed()  # an overdraft where a claim took the places it came for
            self.to_inbox(job)

    async def stop_waiting(self, store: Store, pushes_read: anyio.Event) -> None:
        """Posts stop handing this worker jobs, and those already on their way are read (and
        handed back) before the subscription closes: else they would stay leased to a worker
        that has gone until the reaper finds the lease lapsed."""
        with self.clock.shielded(5):
            try:
                if await store.stop_waiting(self.worker_id):
                    await pushes_read.wait()
            except RedisUnavailable as exc:  # the reaper unregisters it once it lapses
                log.warning("could not unregister waiting worker %s: %s", self.worker_id, exc)

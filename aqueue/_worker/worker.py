"""The worker: one task group that claims jobs, runs listeners, renews leases and records outcomes.

Loops, all children of `Worker.run`:
  claim      takes as many ready jobs as there are free places, into the inbox; posts push
             jobs to it while it waits for work (claim.py)
  slots      `concurrency` runners, each taking the next job from the inbox: no task is
             spawned per job (runners.py; the counts of places, slots and threads: capacity.py)
  heartbeat  renews every lease this worker holds in one call; cancels jobs it no longer holds
             (leases.py)
  wake       a subscription: new work, jobs pushed to this worker, cancellations
  acks       records finished attempts, batched when many finish together (acks.py; what each
             attempt's outcome is: outcomes.py)
  reaper     reclaims jobs whose workers died (every daemon runs one; they do not collide)
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from collections.abc import Sequence
from functools import partial

import anyio
import msgpack
from anyio.abc import TaskStatus

from aqueue._redis import results as _results
from aqueue._redis.backoff import follow
from aqueue._redis.calls import Outcome, claimed_rows
from aqueue._redis.connection import open_store, until_ready
from aqueue._redis.store import Store
from aqueue._services.callbacks import CallbackConfig, Dispatcher
from aqueue._services.forwarder import Forwarder
from aqueue._services.reaper import reap_forever
from aqueue._states import Event
from aqueue._worker.acks import Acks
from aqueue._worker.claim import Claims
from aqueue._worker.handlers import Handlers
from aqueue._worker.leases import Running
from aqueue._worker.outcomes import Outcomes
from aqueue._worker.prefetch import PrefetchGauge
from aqueue._worker.runners import Runners
from aqueue._worker.shared import Shared
from aqueue._worker.stopping import StopClock
from aqueue.client import Client
from aqueue.config import ClientConfig, WorkerConfig
from aqueue.errors import RedisUnavailable
from aqueue.listeners import Listeners

log = logging.getLogger(__name__)

_WAKES = (Event.RETRY, Event.RELEASE)  # outcomes after which a job may soon be ready again


class Worker:
    """Runs the listeners of `listeners` on the jobs of one queue."""

    def __init__(
        self,
        listeners: Listeners,
        config: WorkerConfig | None = None,
        *,
        redis_url: str | None = None,
        client_config: ClientConfig | None = None,
        callbacks: CallbackConfig | None = CallbackConfig(),  # noqa: B008 - frozen value
    ) -> None:
        self.listeners = listeners
        self.callbacks = callbacks  # None: this daemon delivers no callbacks
        self.config = config or WorkerConfig()
        self.client_config = client_config or ClientConfig(
            queue=self.config.queue, redis_url=redis_url
        )
        self.id = self.config.worker_id or (
            f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        )
        self._prefetch = PrefetchGauge(self.config.prefetch, self.config.concurrency)
        self._outcomes = Outcomes(
            self.config.queue,
            _results.envelope,
            self.config.max_result_bytes,
            _results.CHUNK_BYTES,
            self.client_config.max_message_bytes,
        )
        self._handlers = Handlers(self.listeners)  # stateful listeners' setup and teardown
        self._stopping = False
        self._burst = False  # run(burst=True): stop once idle
        self._started_at = time.time()
        self.processed = 0  # attempts finished by this worker

    def _prepare(self) -> None:
        """The loop-bound parts, made when run() starts (never in the constructor)."""
        config = self.config
        self._drained = anyio.Event()
        self._pushes_read = anyio.Event()
        self._claim_scope = anyio.CancelScope()
        self._clock = StopClock(config.grace)  # bounds the stop, whatever Redis answers
        self._serving = False  # started: from here on it may hold jobs
        shared = Shared.make(self.id, config.concurrency, self._prefetch, self._outcomes)
        self._held, self._capacity = shared.held, shared.capacity  # capacity: see capacity.py
        self._inbox_in, self._inbox = shared.inbox_in, shared.inbox
        self._acks = Acks(
            self.id, self._clock, self._sent, lambda: self._held.stopping, config.durability()
        )
        self._claims = Claims(shared, config, self.listeners.names, self._acks, self._clock)
        self._runners = Runners(shared, self.listeners, self._finished, self._lent)
        if self._stopping:  # stop() came before run(): nothing to serve, nothing to drain
            self._held.stopping = True
            self._claim_scope.cancel()
            self._clock.abandon()

    # -- control -------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming; running jobs get the grace period to finish, then are handed back."""
        self._stopping = True
        if hasattr(self, "_claim_scope"):
            self._held.stopping = True
            self._clock.stop()
            if not self._serving:  # still starting (Redis refusing its scripts, say)
                self._clock.abandon()
            self._claim_scope.cancel()
            while True:  # prefetched, never started: hand them back at once
                try:
                    waiting = self._inbox.receive_nowait()
                except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                    break
                if waiting is not None:
                    back = None if waiting.lost else self._outcomes.handed_back(waiting.job)
                    self._finished(waiting, back)
            self._inbox_in.close()  # idle runners end; busy ones after their job
            if not self._held.running:
                self._drained.set()

    def hand_back_now(self) -> None:
        """Stop at once: running jobs are cancelled and handed back to the queue."""
        self.stop()
        if hasattr(self, "_clock"):
            self._clock.stop(now=True)
            for running in list(self._held.running.values()):
                running.scope.cancel()
            self._runners.leave_threads()

    @property
    def running(self) -> int:
        """Jobs running now (not counting prefetched ones waiting for a slot)."""
        return len(self._held.started()) if hasattr(self, "_held") else 0

    # -- the daemon ----------------------------------------------------------------------

    async def run(
        self, *, burst: bool = False, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until stop() — or, with `burst`, until no job is ready or running."""
        self._burst = burst
        self._prepare()
        with self._clock.run:
            await self._serve(burst, task_status)
        if not self._serving:  # stopped while starting: there is nothing to wait for
            task_status.started()
        elif self._clock.run.cancelled_caught:
            log.warning(
                "worker %s stopped at its deadline (grace + wrap-up) with %d outcome(s) not "
                "recorded: the reaper requeues those jobs once their leases lapse",
                self.id,
                len(self._acks.pending),
                extra={"worker": self.id},
            )
        log.info("worker %s stopped", self.id, extra={"worker": self.id})

    async def _serve(self, burst: bool, task_status: TaskStatus[None]) -> None:
        async with open_store(
            self.client_config.redis_url,
            self.config.queue,
            self.client_config.max_connections,
            name=f"aqueue-worker-{os.getpid()}",
            check=False,
        ) as store:
            async with (
                self._inbox_in,  # closed on the way out, whatever happens
                self._inbox,
                Client.over(store, self.client_config) as client,
                store.pinned() as claims,  # the two hot loops each keep a connection
                store.pinned() as acks,
            ):
                # waits out a Redis that is down; a ConfigError (a cluster's node as a
                # single Redis, say: it would serve its own slots' queues without a cluster's
                # rules) stops the worker
                await until_ready(store, f"worker {self.id}")
                async with anyio.create_task_group() as services:
                    lease_ms = int(self.config.lease * 1000)
                    await services.start(
                        partial(
                            self._held.renew_forever, store, self.id, lease_ms,
                            self.config.heartbeat, self._info, self.listeners.names,
                        )
                    )  # fmt: skip
                    await services.start(self._wake_loop, store)
                    services.start_soon(self._acks.loop, acks)
                    if self.callbacks is not None:
                        dispatcher = Dispatcher(store, client, self.callbacks)
                        await services.start(dispatcher.run)
                    if self.config.reaper:
                        services.start_soon(reap_forever, store, self.config.reaper_interval)
                    if self.listeners.outputs:  # some listener's results go to other queues
                        forwarder = Forwarder(store, self.client_config, self.config.idle_wait)
                        await services.start(forwarder.run)
                    log.info(
                        "worker %s serving queue %r with listeners %s",
                        self.id,
                        self.config.queue,
                        ", ".join(self.listeners.names),
                        extra={"queue": self.config.queue, "worker": self.id},
                    )
                    await self._handlers.setup()  # before the first job is claimed
                    self._serving = True
                    task_status.started()
                    async with anyio.create_task_group() as slots:

                        def add_slot() -> None:
                            slots.start_soon(self._runners.slot, client)

                        for _ in range(self.config.concurrency):
                            add_slot()
                        self._runners.add = add_slot
                        with self._claim_scope:
                            await self._claims.loop(claims, burst)
                        self.stop()
                        await self._claims.stop_waiting(store, self._pushes_read)
                        with self._clock.draining():
                            await self._drained.wait()
                        for running in list(self._held.running.values()):
                            running.scope.cancel()  # past the grace period: hand back
                        self._runners.leave_threads()  # and threads that overran are left
                    self._runners.add = None
                    with self._clock.shielded(5):  # (past the grace too: its resources go)
                        await self._handlers.teardown()
                    services.cancel_scope.cancel()
                await self._acks.send(store, final=True)
                with self._clock.shielded(5):
                    try:
                        await store.retire_worker(self.id)
                    except RedisUnavailable as exc:  # it will lapse on its own
                        log.warning("could not deregister worker %s: %s", self.id, exc)

    # -- what the parts tell the worker ----------------------------------------------------

    def _finished(self, running: Running, outcome: Outcome | None) -> None:
        """A job leaves this worker: its claim place is free, its outcome on its way."""
        job = running.job
        held = self._held
        if held.running.get(job.id) is running:  # not a later attempt of the same job
            del held.running[job.id]
        if self._capacity.leave(running):
            self._claims.place_freed.set()
        if held.stopping and not held.running:
            self._drained.set()
        if outcome is None:
            held.let_go(job.id, job.attempt)
        else:
            self._acks.record(outcome)

    def _lent(self) -> None:
        """A job lent its slot: a suspect running alone no longer does (Claims._runs_alone),
        and a waiting claim may have been handed its place."""
        self._held.changed.set()
        self._claims.place_freed.set()

    def _sent(self, batch: Sequence[Outcome], accepted: list[bool]) -> None:
        """Outcomes recorded: their leases are no longer this worker's."""
        if self._burst or any(o.kind in _WAKES for o in batch):
            self._claims.wake.set()  # a retry may be due soon; burst mode re-checks idleness
        for outcome, ok in zip(batch, accepted, strict=True):
            self._held.let_go(outcome.id, outcome.attempt)  # not a later one's
            self.processed += 1
            if not ok:
                log.warning(
                    "outcome of job %s attempt %d refused: the attempt is no longer "
                    "current (its lease lapsed or it was cancelled)",
                    outcome.id,
                    outcome.attempt,
                    extra={"job_id": outcome.id},
                )

    # -- services ------------------------------------------------------------------------

    def _info(self) -> bytes:
        info: bytes = msgpack.packb(
            {
                "id": self.id,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "queue": self.config.queue,
                "listeners": list(self.listeners.names),
                "concurrency": self.config.concurrency,
                "started_at": self._started_at,
                "running": [[r.job.id, r.job.attempt, r.started] for r in self._held.started()],
                "processed": self.processed,
                "outputs": self.listeners.outputs,  # the pipeline as this worker declares it
                **({"handler_error": error} if (error := self._handlers.first_error) else {}),
            }
        )
        return info

    async def _wake_loop(
        self, store: Store, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        pushes = store.keys.push(self.id)

        async def on_message(channel: str, data: bytes | None) -> None:
            if channel == pushes and data == b"":  # stop_waiting's mark: no push after it
                self._pushes_read.set()
            elif channel == pushes and data is not None:
                self._claims.take_pushed(claimed_rows(msgpack.unpackb(data, raw=True)))
            elif channel == store.keys.control and data is not None:
                command, job_id = msgpack.unpackb(data)
                if command == "cancel":
                    self._held.lose(job_id)
            else:
                self._claims.wake.set()  # new work, or (re)subscribed: look again

        channels = [store.keys.wake, store.keys.control, pushes]
        await follow(store, channels, on_message, task_status.started, "wake")

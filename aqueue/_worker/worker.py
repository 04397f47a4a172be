"""The worker: one task group that claims jobs, runs listeners, renews leases and records outcomes.

Loops, all children of `Worker.run`:
  claim      takes as many ready jobs as there are free slots and prefetch places, in one
             script call, into the inbox; prefetched jobs wait there, so no slot waits on
             Redis (as many as finish during one claim: see _prefetch.py). A short claim
             leaves the worker registered as waiting: posts then hand it jobs directly (over
             its push channel), leased to it, with no claim round trip. When the claim says
             suspects wait (jobs whose worker died: see reap.lua), it drains and runs them
             one at a time, each alone.
  slots      `concurrency` runners, each taking the next job from the inbox: no task is
             spawned per job
  heartbeat  renews every lease this worker holds in one call; cancels jobs it no longer holds
  wake       a subscription: new work, jobs pushed to this worker, cancellations
  acks       records finished attempts, batched when many finish together
  reaper     reclaims jobs whose workers died (every daemon runs one; they do not collide)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import socket
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

import anyio
import anyio.to_thread
import msgpack
from anyio.abc import TaskStatus

from aqueue import _codec
from aqueue._redis import results as _results
from aqueue._redis.backoff import Backoff, follow
from aqueue._redis.connection import open_store
from aqueue._redis.records import retry_policy
from aqueue._redis.store import Claimed, Outcome, Store, claimed_rows
from aqueue._services.callbacks import CallbackConfig, Dispatcher
from aqueue._services.reaper import reap_forever
from aqueue._worker.capacity import Capacity
from aqueue._worker.prefetch import PrefetchGauge
from aqueue._worker.stopping import StopClock
from aqueue.client import Client
from aqueue.config import ClientConfig, WorkerConfig
from aqueue.errors import (
    ConfigError,
    JobTimeout,
    LeaseLost,
    MessageError,
    RedisUnavailable,
    Retry,
)
from aqueue.job import Output
from aqueue.listeners import AsyncListener, Context, Listener, Listeners, SyncContext, SyncListener
from aqueue.retry import DEFAULT_POLICY

log = logging.getLogger(__name__)

_TRACEBACK_LIMIT = 64 * 1024
_RESULT_REMEDY = (
    "raise the worker's max_result_bytes (--max-result-bytes, AQUEUE_MAX_RESULT_BYTES), "
    "or store it elsewhere and return a reference"
)


def _message_of(exc: BaseException) -> str:
    """An error's text, even when its own __str__ fails (that must not fail the worker)."""
    try:
        return str(exc)
    except Exception as failure:
        return f"<str() of the error failed: {type(failure).__name__}>"


def _cancelled(running: _Running) -> bool:
    """Is this job's task being cancelled by us (its scope, or a scope around the worker)?"""
    task = asyncio.current_task()
    return running.scope.cancel_called or (task is not None and task.cancelling() > 0)


def _printable(text: str) -> str:
    """`text` as it can be stored: a lone surrogate (from a bad decode, say) as its escape."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass
class _Running:
    job: Claimed
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    lost: bool = False  # reclaimed or cancelled elsewhere: write nothing
    lends: int = 0  # its waits on other jobs now: its slot is lent out while there are any
    holds_place: bool = True  # its claim place (given up for good when it lends its slot)
    thread_ended: threading.Event | None = None  # a plain function's thread, left running
    waiting: bool = True  # in the inbox: claimed, not yet taken by a slot
    started: float = field(default_factory=time.time)


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
        self._lease_ms = int(self.config.lease * 1000)
        self._running: dict[str, _Running] = {}
        self._leases: dict[str, int] = {}  # job id -> attempt, until its outcome is recorded
        self._acks: list[Outcome] = []
        self._add_slot: Callable[[], None] | None = None  # one more runner, in run()
        self._suspects_wait = False  # the last claim said: drain, then claim suspects alone
        self._alone: _Running | None = None  # the suspect running alone now
        self._prefetch = PrefetchGauge(self.config.prefetch, self.config.concurrency)
        self._stopping = False
        self._burst = False  # run(burst=True): stop once idle
        self._started_at = time.time()
        self.processed = 0  # attempts finished by this worker

    def _prepare(self) -> None:
        """The loop-bound parts, made when run() starts (never in the constructor)."""
        self._ack_ready = anyio.Event()
        self._wake = anyio.Event()
        self._drained = anyio.Event()
        self._pushes_read = anyio.Event()
        self._leases_changed = anyio.Event()  # a lease ended, or a job lent its slot
        self._claim_scope = anyio.CancelScope()
        self._clock = StopClock(self.config.grace)  # bounds the stop, whatever Redis answers
        self._serving = False  # started: from here on it may hold jobs
        # claim places, slots and threads: see capacity.py
        self._capacity = Capacity[anyio.Event](self.config.concurrency, self.config.prefetch)
        self._place_freed = anyio.Event()  # set when a waiting claim is handed its place
        # None: a nudge for an idle runner to see whether it retires (see _lend_slot)
        self._inbox_in, self._inbox = anyio.create_memory_object_stream[_Running | None](math.inf)
        self._thread_waits: set[anyio.CancelScope] = set()  # runners waiting on threads
        self._threads_left = False  # stopped waiting for them (past the grace period)
        self._threads = anyio.CapacityLimiter(self._capacity.threads)
        if self._stopping:  # stop() came before run(): nothing to serve, nothing to drain
            self._claim_scope.cancel()
            self._clock.abandon()

    # -- control -------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming; running jobs get the grace period to finish, then are handed back."""
        self._stopping = True
        if hasattr(self, "_claim_scope"):
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
                    back = None if waiting.lost else self._handed_back(waiting.job)
                    self._finished(waiting, back)
            self._inbox_in.close()  # idle runners end; busy ones after their job
            if not self._running:
                self._drained.set()

    def hand_back_now(self) -> None:
        """Stop at once: running jobs are cancelled and handed back to the queue."""
        self.stop()
        if hasattr(self, "_clock"):
            self._clock.stop(now=True)
        for running in list(self._running.values()):
            running.scope.cancel()
        self._leave_threads()

    @property
    def running(self) -> int:
        """Jobs running now (not counting prefetched ones waiting for a slot)."""
        return sum(1 for running in self._running.values() if not running.waiting)

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
                len(self._acks),
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
                async with anyio.create_task_group() as services:
                    await services.start(self._heartbeat_loop, store)
                    await services.start(self._wake_loop, store)
                    services.start_soon(self._ack_loop, acks)
                    if self.callbacks is not None:
                        dispatcher = Dispatcher(store, client, self.callbacks)
                        await services.start(dispatcher.run)
                    if self.config.reaper:
                        services.start_soon(reap_forever, store, self.config.reaper_interval)
                    log.info(
                        "worker %s serving queue %r with listeners %s",
                        self.id,
                        self.config.queue,
                        ", ".join(self.listeners.names),
                        extra={"queue": self.config.queue, "worker": self.id},
                    )
                    self._serving = True
                    task_status.started()
                    async with anyio.create_task_group() as slots:

                        def add_slot() -> None:
                            slots.start_soon(self._slot, client)

                        for _ in range(self.config.concurrency):
                            add_slot()
                        self._add_slot = add_slot
                        with self._claim_scope:
                            await self._claim_loop(claims, burst)
                        self.stop()
                        await self._stop_waiting(store)
                        with self._clock.draining():
                            await self._drained.wait()
                        for running in list(self._running.values()):
                            running.scope.cancel()  # past the grace period: hand back
                        self._leave_threads()  # and threads that overran are left behind
                    self._add_slot = None
                    services.cancel_scope.cancel()
                await self._send_acks(store, final=True)
                with self._clock.shielded(5):
                    try:
                        await store.retire_worker(self.id)
                    except RedisUnavailable as exc:  # it will lapse on its own
                        log.warning("could not deregister worker %s: %s", self.id, exc)

    async def _claim_loop(self, store: Store, burst: bool) -> None:
        names = self.listeners.names
        backoff = Backoff()
        while True:
            # Suspects wait: should one kill this worker, nothing else may share the blame.
            alone = self._suspects_wait
            if alone:
                await self._until(lambda: not self._leases)
            self._capacity.park(self._prefetch.now)
            await self._take_place()
            await anyio.lowlevel.checkpoint()  # let finishing jobs free their places first
            taken = 1 if alone else 1 + self._capacity.take_more(self.config.claim_batch - 1)
            self._wake = anyio.Event()
            try:
                # a claim is never abandoned half-read, but at the stop's deadline
                with self._clock.shielded() as claiming:
                    if alone:
                        claim = await store.claim_alone(self.id, self._lease_ms, names)
                    else:
                        began = time.monotonic()
                        claim = await store.claim(self.id, self._lease_ms, taken, names)
                        self._prefetch.claim_took(time.monotonic() - began)
                if claiming.cancelled_caught:
                    self._capacity.claimed(taken, 0)
                    return
            except RedisUnavailable as exc:
                self._capacity.claimed(taken, 0)
                log.warning("claim failed, retrying in %.2f s: %s", backoff.delay, exc)
                await backoff.sleep()
                continue
            backoff.reset()
            self._capacity.claimed(taken, len(claim.jobs))
            for job in claim.jobs:
                self._to_inbox(job)
            self._suspects_wait = claim.suspects
            if alone:
                if claim.jobs:  # nothing more until it ends, or lends its slot (see below)
                    self._alone = self._running.get(claim.jobs[0].id)
                    try:
                        await self._until(lambda: not self._runs_alone())
                    finally:
                        self._alone = None
                continue
            if claim.full or claim.suspects:
                continue  # there may be more ready
            # Short: the lanes are empty for now. Wait for a post, requeue or outcome to wake
            # us, or for the next scheduled job: claiming again at once would find nothing.
            if burst and not self._running and not self._leases:
                return
            wait = self.config.idle_wait
            if claim.next_due_ms is not None:
                wait = min(wait, max(0.0, (claim.next_due_ms - claim.now_ms) / 1000))
            with anyio.move_on_after(wait):
                await self._wake.wait()

    async def _until(self, done: Callable[[], bool]) -> None:
        """Wait until `done()`, looked at again whenever a lease ends or a job lends its slot."""
        while not done():
            self._leases_changed = anyio.Event()
            await self._leases_changed.wait()

    def _runs_alone(self) -> bool:
        """Is a suspect running alone here? Not once it waits on another job: it lends its
        slot then, which other jobs must be able to take (else one worker would deadlock)."""
        alone = self._alone
        return (
            alone is not None
            and alone.holds_place
            and self._leases.get(alone.job.id) == alone.job.attempt
        )

    def _let_go(self, job_id: str, attempt: int | None) -> None:
        """The lease of `attempt` of the job (None: of whichever) is no longer this worker's."""
        if attempt is None or self._leases.get(job_id) == attempt:
            self._leases.pop(job_id, None)
            self._leases_changed.set()

    async def _take_place(self) -> None:
        """A claim's first place: free now, or the next one a job gives up."""
        await anyio.lowlevel.checkpoint_if_cancelled()
        capacity = self._capacity
        if capacity.take_place():
            await anyio.lowlevel.cancel_shielded_checkpoint()  # others run first, as they would
            return
        try:
            while capacity.awaiting:
                self._place_freed = anyio.Event()
                await self._place_freed.wait()
        except BaseException:  # cancelled: a place handed over meanwhile is free again
            capacity.stop_awaiting()
            raise

    def _give_up_place(self) -> None:
        if self._capacity.give_up():
            self._place_freed.set()

    def _to_inbox(self, job: Claimed) -> None:
        """A job leased to this worker (its claim place taken) waits for a slot; once the
        worker is stopping (a claim can land after stop()), it goes straight back."""
        older = self._running.get(job.id)
        if older is not None and older.job.attempt != job.attempt:
            # Its lease lapsed here (this worker was frozen, say) and it came back as a new
            # attempt: the old one is no longer ours, and writes nothing.
            older.lost = True
            older.scope.cancel()
        self._leases[job.id] = job.attempt
        if self._stopping or self._runs_alone():  # (a post handed it over as a suspect began)
            self._give_up_place()
            self._record(self._handed_back(job))
            return
        running = self._running[job.id] = _Running(job)
        self._inbox_in.send_nowait(running)

    def _take_pushed(self, jobs: list[Claimed]) -> None:
        """Jobs a post handed to this worker while it waited: already leased to it."""
        for job in jobs:
            self._capacity.pushed()  # an overdraft where a claim took the places it came for
            self._to_inbox(job)

    async def _stop_waiting(self, store: Store) -> None:
        """Posts stop handing this worker jobs, and those already on their way are read (and
        handed back) before the subscription closes: else they would stay leased to a worker
        that has gone until the reaper finds the lease lapsed."""
        with self._clock.shielded(5):
            try:
                if await store.stop_waiting(self.id):
                    await self._pushes_read.wait()
            except RedisUnavailable as exc:  # the reaper unregisters it once it lapses
                log.warning("could not unregister waiting worker %s: %s", self.id, exc)

    # -- one job -------------------------------------------------------------------------

    async def _slot(self, client: Client) -> None:
        """One runner: takes the next job from the inbox and runs it, until the inbox closes
        (or it is retired, to give back a slot a waiting parent job had lent out)."""
        capacity = self._capacity
        while (retired := capacity.runner_free()) is None:
            try:
                running = await self._inbox.receive()
            except anyio.EndOfStream:  # leaving anyway: it may answer a give-back that waits
                retired = capacity.runner_leaves()
                break
            if running is not None:
                await self._run_job(client, running)
                if running.thread_ended is not None:  # its slot stays taken until it ends
                    await self._outlast(running.thread_ended)
        if retired is not None:
            retired.set()

    async def _run_job(self, client: Client, running: _Running) -> None:
        job = running.job
        outcome: Outcome | None = None
        try:
            running.waiting = False
            if not running.scope.cancel_called:  # else lost or cancelled in the inbox
                with running.scope:
                    running.started = time.time()
                    began = time.monotonic()
                    outcome = await self._execute(client, running)
                    self._prefetch.job_ran(time.monotonic() - began)
            if outcome is None and not running.lost:
                outcome = self._handed_back(job)
        finally:
            self._finished(running, outcome)

    async def _outlast(self, thread_ended: threading.Event) -> None:
        """Wait for a plain function's thread that its job no longer waits for (a timeout, a
        cancel): a thread cannot be stopped, and until it ends it holds this slot."""
        with anyio.CancelScope() as scope:
            if self._threads_left:
                scope.cancel()  # past the grace period: no more waiting
            self._thread_waits.add(scope)
            try:  # rare (only overrunning threads): a spare thread waits for it
                await anyio.to_thread.run_sync(thread_ended.wait, abandon_on_cancel=True)
            finally:
                self._thread_waits.discard(scope)

    def _leave_threads(self) -> None:
        self._threads_left = True
        for scope in list(self._thread_waits):
            scope.cancel()

    def _record(self, outcome: Outcome) -> None:
        """For the ack loop, which records outcomes in batches."""
        self._acks.append(outcome)
        self._ack_ready.set()

    def _handed_back(self, job: Claimed) -> Outcome:
        log.info("handing back job %s", job.id, extra={"job_id": job.id})
        return job.outcome("release")  # no attempt used

    def _finished(self, running: _Running, outcome: Outcome | None) -> None:
        """A job leaves this worker: its claim place is free, its outcome on its way."""
        job = running.job
        if self._running.get(job.id) is running:  # not a later attempt of the same job
            del self._running[job.id]
        if self._capacity.leave(running):
            self._place_freed.set()
        if self._stopping and not self._running:
            self._drained.set()
        if outcome is None:
            self._let_go(job.id, job.attempt)
        else:
            self._record(outcome)

    async def _execute(self, client: Client, running: _Running) -> Outcome | None:
        job = running.job
        try:
            if job.unreadable:
                raise MessageError(f"job {job.id} cannot be run: {job.unreadable}")
            chain = self.listeners.resolve(job.functions)
            msg = _codec.decode(job.msg, "message")
        except Exception as exc:
            return self._failure(job, exc, retryable=False)
        ctx = Context(
            client,
            job_id=job.id,
            attempt=job.attempt,
            max_attempts=job.max_attempts,
            worker_id=self.id,
            release_slot=partial(self._lend_slot, running),
        )
        current: Listener = chain[0]
        try:
            value: Any = None
            if job.timeout_ms:
                with anyio.move_on_after(job.timeout_ms / 1000) as deadline:
                    for current in chain:
                        value = await self._call(current, msg, ctx, running)
                if deadline.cancelled_caught:
                    raise JobTimeout(job.id, job.timeout_ms / 1000)
            else:  # no scope to pay for on the common path
                for current in chain:
                    value = await self._call(current, msg, ctx, running)
        except LeaseLost:
            running.lost = True
            log.warning(
                "job %s attempt %d lost its lease: its writes are refused, nothing recorded",
                job.id,
                job.attempt,
                extra={"job_id": job.id},
            )
            return None
        except Retry as request:
            return self._failure(job, request, retryable=True, delay=request.delay)
        except Exception as exc:
            return self._failure(job, exc, retryable=isinstance(exc, current.retry_on))
        except BaseException as exc:
            # SystemExit, KeyboardInterrupt, a CancelledError of the listener's own making:
            # the job fails, not the daemon and the jobs beside it. A cancellation of ours
            # (cancel, lost lease, shutdown) goes on up.
            if isinstance(exc, asyncio.CancelledError) and _cancelled(running):
                raise
            return self._failure(job, exc, retryable=False)
        return await self._success(client, job, value)

    async def _call(self, listener: Listener, msg: Any, ctx: Context, running: _Running) -> Any:
        if listener.is_async:
            return await cast(AsyncListener, listener.func)(msg, ctx)
        func = cast(SyncListener, listener.func)
        ended = threading.Event()  # set in the thread itself: no trip to the loop per job

        def in_thread() -> Any:
            try:
                return func(msg, SyncContext(ctx))
            finally:
                ended.set()

        try:
            return await anyio.to_thread.run_sync(
                in_thread,
                limiter=self._threads,
                abandon_on_cancel=True,  # a thread cannot be cancelled: its outcome is
            )  # recorded now, and its runner waits for it to end (see _slot)
        finally:
            if not ended.is_set():
                running.thread_ended = ended

    async def _lend_slot(self, running: _Running) -> Any:
        """The job waits on another: its claim place, its slot (one more runner) and, for
        plain functions, a thread serve other jobs meanwhile, so a one-slot worker never
        deadlocks on a child job. Waits side by side (a fan-out) lend only once."""
        capacity = self._capacity
        if capacity.lend(running):
            self._leases_changed.set()  # a suspect running alone no longer does (_runs_alone)
            self._place_freed.set()  # a waiting claim may have been handed its place
            self._threads.total_tokens = capacity.threads
            if self._add_slot is not None:
                self._add_slot()

        async def reacquire() -> None:
            # One runner retires whatever happens next, even if this job is cancelled right
            # here (a timeout, a cancel, a lost lease): then it just ends without the slot.
            retired = anyio.Event()
            waits = capacity.give_back(running, retired, stopping=self._stopping)
            self._threads.total_tokens = capacity.threads
            if waits:
                with contextlib.suppress(anyio.ClosedResourceError):
                    self._inbox_in.send_nowait(None)  # wakes an idle runner to retire at once
                # Its claim place is not taken back: the slots are the hard limit, places only
                # bound prefetching, and waiting for one here could wait on its own children.
                try:
                    await retired.wait()
                except BaseException:  # cancelled: its own runner retires in its place
                    capacity.withdraw(retired)
                    raise

        return reacquire

    async def _success(self, client: Client, job: Claimed, value: Any) -> Outcome:
        if isinstance(value, Output):
            result, short = value.result, value.short
        elif isinstance(value, str):
            result, short = value, value
        else:
            result, short = value, None
        try:
            size, pieces = _results.envelope(result, self.config.max_result_bytes, _RESULT_REMEDY)
            if short is not None and not isinstance(short, str):
                raise MessageError(f"short result must be a str, got {type(short).__name__}")
            if short is not None and short != _printable(short):
                raise MessageError(f"short result {short!r} is not valid Unicode text")
        except MessageError as exc:
            return self._failure(job, exc, retryable=False)
        kind = "complete"
        if size <= _results.CHUNK_BYTES:  # the common case: in the record, by the finish
            fields: list[str | bytes] = ["result", cast(bytes, pieces[0])]  # one: see envelope
        else:  # in chunks beside it, that the finish makes the job's (see _results.py)
            try:
                fields = await _results.upload(client.store, job.id, pieces, size, job.ttl_s)
            except RedisUnavailable as exc:  # (e.g. Redis out of memory) an attempt spent
                return self._failure(job, exc, retryable=True)
            kind = "chunked"
        if short is not None:
            fields += ["short", short]
        return job.outcome(kind, 0, fields)

    def _failure(
        self, job: Claimed, exc: BaseException, *, retryable: bool, delay: float | None = None
    ) -> Outcome:
        kind = type(exc)
        name = (
            kind.__qualname__
            if kind.__module__ == "builtins"
            else (f"{kind.__module__}.{kind.__qualname__}")
        )
        message = _message_of(exc)
        fields = [
            "err_type", _printable(name),
            "err_msg", _printable(message[:8192]),
            "err_tb", _printable("".join(traceback.format_exception(exc))[-_TRACEBACK_LIMIT:]),
        ]  # fmt: skip
        log.warning(
            "job %s attempt %d failed: %s: %s",
            job.id,
            job.attempt,
            name,
            message[:8192],
            extra={"job_id": job.id, "queue": self.config.queue},
        )
        if not retryable:
            return job.outcome("fail", 0, fields)
        if delay is None:
            try:
                policy = retry_policy(job.retry, job.max_attempts)
            except ConfigError:  # posted by an older build, which let a bad policy through
                policy = DEFAULT_POLICY
            delay = policy.delay_before(job.attempt - job.released)
        return job.outcome("retry", int(delay * 1000), fields)

    # -- services ------------------------------------------------------------------------

    async def _ack_loop(self, store: Store) -> None:
        while True:
            await self._ack_ready.wait()
            self._ack_ready = anyio.Event()
            await self._send_acks(store)

    async def _send_acks(self, store: Store, *, final: bool = False) -> None:
        """Record pending outcomes; retried while Redis is away (when stopping, until the
        stop's deadline: after that the reaper recovers those jobs)."""
        backoff = Backoff()
        with self._clock.shielded():
            while self._acks:
                batch, self._acks = self._acks, []
                try:
                    accepted = await store.finish(self.id, batch)
                except RedisUnavailable as exc:
                    self._acks[:0] = batch
                    if self._stopping and not final:
                        return  # the final send takes them, for at most the grace period
                    log.warning("recording outcomes failed, retrying: %s", exc)
                    await backoff.sleep()
                    continue
                if self._burst or any(o.kind in ("retry", "release") for o in batch):
                    self._wake.set()  # a retry may be due soon; burst mode re-checks idleness
                for outcome, ok in zip(batch, accepted, strict=True):
                    self._let_go(outcome.id, outcome.attempt)  # not a later one's
                    self.processed += 1
                    if not ok:
                        log.warning(
                            "outcome of job %s attempt %d refused: the attempt is no longer "
                            "current (its lease lapsed or it was cancelled)",
                            outcome.id,
                            outcome.attempt,
                            extra={"job_id": outcome.id},
                        )

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
                "running": [
                    [r.job.id, r.job.attempt, r.started]
                    for r in self._running.values()
                    if not r.waiting
                ],
                "processed": self.processed,
            }
        )
        return info

    async def _heartbeat_loop(
        self, store: Store, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        started = False
        backoff = Backoff(cap=self.config.heartbeat)
        while True:
            sent = dict(self._leases)  # job id -> the attempt this beat asks about
            try:
                lost = await store.heartbeat(
                    self.id, self._lease_ms, self._info(), list(sent.items()), self.listeners.names
                )
            except RedisUnavailable as exc:
                log.warning("heartbeat failed, retrying in %.2f s: %s", backoff.delay, exc)
                await backoff.sleep()
                continue
            backoff.reset()
            for job_id in lost:  # the attempt it asked about: a later one may have begun since
                self._lose(job_id, sent.get(job_id))
            if not started:
                task_status.started()
                started = True
            await anyio.sleep(self.config.heartbeat)

    def _lose(self, job_id: str, attempt: int | None = None) -> None:
        """This worker no longer holds the job (its `attempt`; None: whichever it runs): stop
        running it and write nothing for it."""
        if attempt is not None and self._leases.get(job_id, attempt) != attempt:
            return  # that attempt ended here, and the job's next one is ours
        running = self._running.get(job_id)
        if running is not None:
            running.lost = True
            running.scope.cancel()
            log.warning("job %s is no longer ours; cancelled", job_id, extra={"job_id": job_id})
        else:
            self._let_go(job_id, None)

    async def _wake_loop(
        self, store: Store, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        pushes = store.keys.push(self.id)

        async def on_message(channel: str, data: bytes | None) -> None:
            if channel == pushes and data == b"":  # stop_waiting's mark: no push after it
                self._pushes_read.set()
            elif channel == pushes and data is not None:
                self._take_pushed(claimed_rows(msgpack.unpackb(data, raw=True)))
            elif channel == store.keys.control and data is not None:
                command, job_id = msgpack.unpackb(data)
                if command == "cancel":
                    self._lose(job_id)
            else:
                self._wake.set()  # new work, or (re)subscribed: look again

        channels = [store.keys.wake, store.keys.control, pushes]
        await follow(store, channels, on_message, task_status.started, "wake")

"""The worker's slots: runners that each take the next job from the inbox and run it.

`concurrency` runners, no task spawned per job. A job that waits on another lends its slot
(one more runner starts) and gives it back when the wait ends (a runner retires): the counts
are `capacity.py`'s. Plain-function listeners run in threads, as many at once as there are
slots; a thread that overruns its job (a timeout, a cancel) keeps its slot until it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, cast

import anyio
import anyio.to_thread

from aqueue import _codec
from aqueue._redis import results as _results
from aqueue._redis.calls import Claimed, Outcome
from aqueue._worker.leases import Running
from aqueue._worker.outcomes import Upload
from aqueue._worker.shared import Shared
from aqueue.client import Client
from aqueue.errors import JobTimeout, LeaseLost, MessageError, RedisUnavailable
from aqueue.listeners import AsyncListener, Context, Listener, Listeners, SyncContext, SyncListener

log = logging.getLogger(__name__)


def _cancelled(running: Running) -> bool:
    """Is this job's task being cancelled by us (its scope, or a scope around the worker)?"""
    task = asyncio.current_task()
    return running.scope.cancel_called or (task is not None and task.cancelling() > 0)


class Runners:
    """Made inside the event loop, when the run starts. `finished` hears of each job that
    leaves (with its outcome; None: nothing to record), `lent` of each slot a job lends."""

    def __init__(
        self,
        shared: Shared,
        listeners: Listeners,
        finished: Callable[[Running, Outcome | None], None],
        lent: Callable[[], None],
    ) -> None:
        self.worker_id = shared.worker_id
        self.listeners = listeners
        self.outcomes = shared.outcomes
        self.capacity = shared.capacity
        self.prefetch = shared.prefetch
        self.held = shared.held
        self.inbox_in, self.inbox = shared.inbox_in, shared.inbox
        self.finished = finished
        self.lent = lent
        self.add: Callable[[], None] | None = None  # one more runner, while the slots run
        self.threads = anyio.CapacityLimiter(self.capacity.threads)
        self._thread_waits: set[anyio.CancelScope] = set()  # runners waiting on threads
        self._threads_left = False  # stopped waiting for them (past the grace period)

    async def slot(self, client: Client) -> None:
        """One runner: takes the next job from the inbox and runs it, until the inbox closes
        (or it is retired, to give back a slot a waiting parent job had lent out)."""
        capacity = self.capacity
        while (retired := capacity.runner_free()) is None:
            try:
                running = await self.inbox.receive()
            except anyio.EndOfStream:  # leaving anyway: it may answer a give-back that waits
                retired = capacity.runner_leaves()
                break
            if running is not None:
                await self._run_job(client, running)
                if running.thread_ended is not None:  # its slot stays taken until it ends
                    await self._outlast(running.thread_ended)
        if retired is not None:
            retired.set()

    async def _run_job(self, client: Client, running: Running) -> None:
        job = running.job
        outcome: Outcome | None = None
        try:
            running.waiting = False
            if not running.scope.cancel_called:  # else lost or cancelled in the inbox
                with running.scope:
                    running.started = time.time()
                    began = time.monotonic()
                    outcome = await self._execute(client, running)
                    self.prefetch.job_ran(time.monotonic() - began)
            if outcome is None and not running.lost:
                outcome = self.outcomes.handed_back(job)
        finally:
            self.finished(running, outcome)

    async def _execute(self, client: Client, running: Running) -> Outcome | None:
        job = running.job
        try:
            if job.unreadable:
                raise MessageError(f"job {job.id} cannot be run: {job.unreadable}")
            chain = self.listeners.resolve(job.functions)
            msg = _codec.decode(job.msg, "message")
        except Exception as exc:
            return self.outcomes.failed(job, exc, retryable=False)
        ctx = Context(
            client,
            job_id=job.id,
            attempt=job.attempt,
            max_attempts=job.max_attempts,
            released=job.released,
            worker_id=self.worker_id,
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
        except Exception as exc:
            return self.outcomes.raised(job, exc, current.retry_on, current.handling)
        except BaseException as exc:
            # SystemExit, KeyboardInterrupt, a CancelledError of the listener's own making:
            # the job fails, not the daemon and the jobs beside it. A cancellation of ours
            # (cancel, lost lease, shutdown) goes on up.
            if isinstance(exc, asyncio.CancelledError) and _cancelled(running):
                raise
            return self.outcomes.raised(job, exc, current.retry_on, current.handling)
        ended = self.outcomes.returned(job, value, current.outputs, current.iter_output)
        if isinstance(ended, Upload):
            return await self._upload(client, job, ended)
        return ended

    async def _upload(self, client: Client, job: Claimed, upload: Upload) -> Outcome:
        """A result too large for the record goes up in chunks beside it, that the finish
        makes the job's (see _results.py)."""
        try:
            fields = await _results.upload(
                client.store, job.id, upload.pieces, upload.size, job.ttl_s
            )
        except RedisUnavailable as exc:  # (e.g. Redis out of memory) an attempt spent
            return self.outcomes.failed(job, exc, retryable=True)
        return self.outcomes.uploaded(job, fields, upload.short, upload.outputs)

    async def _call(self, listener: Listener, msg: Any, ctx: Context, running: Running) -> Any:
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
                limiter=self.threads,
                abandon_on_cancel=True,  # a thread cannot be cancelled: its outcome is
            )  # recorded now, and its runner waits for it to end (see slot)
        finally:
            if not ended.is_set():
                running.thread_ended = ended

    async def _lend_slot(self, running: Running) -> Callable[[], Awaitable[None]]:
        """The job waits on another: its claim place, its slot (one more runner) and, for
        plain functions, a thread serve other jobs meanwhile, so a one-slot worker never
        deadlocks on a child job. Waits side by side (a fan-out) lend only once."""
        capacity = self.capacity
        if capacity.lend(running):
            self.lent()
            self.threads.total_tokens = capacity.threads
            if self.add is not None:
                self.add()

        async def reacquire() -> None:
            # One runner retires whatever happens next, even if this job is cancelled right
            # here (a timeout, a cancel, a lost lease): then it just ends without the slot.
            retired = anyio.Event()
            waits = capacity.give_back(running, retired, stopping=self.held.stopping)
            self.threads.total_tokens = capacity.threads
            if waits:
                with contextlib.suppress(anyio.ClosedResourceError):
                    self.inbox_in.send_nowait(None)  # wakes an idle runner to retire at once
                # Its claim place is not taken back: the slots are the hard limit, places only
                # bound prefetching, and waiting for one here could wait on its own children.
                try:
                    await retired.wait()
                except BaseException:  # cancelled: its own runner retires in its place
                    capacity.withdraw(retired)
                    raise

        return reacquire

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

    def leave_threads(self) -> None:
        """Past the grace period: stop waiting for threads that overran their jobs."""
        self._threads_left = True
        for scope in list(self._thread_waits):
            scope.cancel()

"""Posts made at the same time, sent together: one script call per option set."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field

from aqueue._redis.calls import MOST_CALL_BYTES, NewJobs
from aqueue.errors import NotDurable, RedisUnavailable

Send = Callable[[NewJobs, int], Awaitable[list[str]]]
MOST_JOBS = 1000  # per script call, as a bulk post sends them


def _future() -> asyncio.Future[list[str] | None]:
    return asyncio.get_running_loop().create_future()


@dataclass(eq=False)
class _Post:
    new: NewJobs
    key_ttl_ms: int
    # its ids, or None: its turn to send the next batch
    turn: asyncio.Future[list[str] | None] = field(default_factory=_future)

    @property
    def share(self) -> Hashable:
        """What posts must have in common to go in one call."""
        n = self.new
        return (n.signature, n.priority, n.delay_ms, n.at_ms, n.watched, tuple(n.fields),
                n.most_unserved_lanes, self.key_ttl_ms)  # fmt: skip

    @property
    def size(self) -> int:
        return sum(len(spec) for _, _, spec in self.new.jobs)


class Coalescer:
    """Group commit for posts. A post made while none is in flight is sent at once, alone: an
    app that awaits each post never waits for this. Posts made while one is in flight queue
    up; when it ends, the first of them sends them all, one script call per option set, so a
    hundred tasks posting at once make a few round trips rather than a hundred.

    A post is never split: its jobs go in one call, written whole or not at all, as alone. A
    batch of several is sent from a task of its own, so that cancelling the post that sends it
    leaves the others' outcome alone. A call's error is each of its posts' error.
    """

    def __init__(self, send: Send) -> None:
        self._send = send
        self._queue: list[_Post] = []
        self._busy = False
        self._batches: set[asyncio.Task[None]] = set()  # the loop keeps only weak references
        self._settled = asyncio.Event()  # nothing on its way, nothing waiting
        self._settled.set()
        self._closed = False

    async def aclose(self, patience: float = 10.0) -> None:
        """Let the posts already made go (for up to `patience` seconds), then stop: a batch
        still on its way is cancelled and posts still waiting fail, so that nothing opens a
        connection once the client has closed its own."""
        self._closed = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(patience):
                await self._settled.wait()
        for task in list(self._batches):
            task.cancel()
        await asyncio.gather(*self._batches, return_exceptions=True)
        self._fail_waiting()

    def _fail_waiting(self) -> None:
        waiting, self._queue = self._queue, []
        for p in waiting:
            if not p.turn.done():
                p.turn.set_exception(_closed("before it was sent"))
        if not self._batches:
            self._busy = False
            self._settled.set()

    async def post(self, new: NewJobs, key_ttl_ms: int) -> list[str]:
        if self._closed:
            raise RuntimeError("the client is closed")
        if not self._busy:
            self._busy = True
            self._settled.clear()
            try:
                return await self._send(new, key_ttl_ms)  # alone, at once
            finally:
                self._pass_lead()
        me = _Post(new, key_ttl_ms)
        self._queue.append(me)
        try:
            ids = await asyncio.shield(me.turn)
        except asyncio.CancelledError:
            self._give_up(me)
            raise
        if ids is not None:
            return ids
        if self._closed:  # the client closed while this post waited for its turn
            if me in self._queue:
                self._queue.remove(me)
            self._fail_waiting()
            raise _closed("before it was sent")
        # this post leads the next batch: all that queued up, itself first
        batch, self._queue = self._queue, []
        me.turn = _future()
        task = asyncio.create_task(self._send_all(batch))
        self._batches.add(task)
        task.add_done_callback(self._batch_done)
        try:
            await asyncio.wait({task})  # (it goes on if this post is cancelled)
        except asyncio.CancelledError:
            me.turn.add_done_callback(_read)
            raise
        finally:
            self._pass_lead()
        ids = await me.turn  # (set by now)
        assert ids is not None
        return ids

    def _pass_lead(self) -> None:
        if self._queue:
            self._queue[0].turn.set_result(None)
        else:
            self._busy = False
            if not self._batches:
                self._settled.set()

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._batches.discard(task)
        if not self._batches and not self._busy:
            self._settled.set()

    def _give_up(self, me: _Post) -> None:
        """A waiting post was cancelled: it is not sent; if it was to lead, the next one does.
        (If its batch is already on its way, its outcome goes unread.)"""
        turn = me.turn
        leads = (
            turn.done() and not turn.cancelled() and turn.exception() is None
            and turn.result() is None
        )  # fmt: skip
        if me in self._queue:
            self._queue.remove(me)
        if leads:
            self._pass_lead()
        me.turn.add_done_callback(_read)

    async def _send_all(self, batch: list[_Post]) -> None:
        for call in _calls(batch):
            jobs = list(itertools.chain.from_iterable(p.new.jobs for p in call))
            try:
                ids = await self._send(
                    dataclasses.replace(call[0].new, jobs=jobs), call[0].key_ttl_ms
                )
            except NotDurable as exc:  # posted, short of durable: each post hears of its own
                start = 0
                for p in call:
                    p.turn.set_exception(exc.of(exc.job_ids[start : start + len(p.new.jobs)]))
                    start += len(p.new.jobs)
                continue
            except Exception as exc:
                for p in call:
                    p.turn.set_exception(exc)
                continue
            except BaseException:  # cancelled: the client closed (or the loop is ending)
                for p in batch:
                    if not p.turn.done():
                        p.turn.set_exception(_closed("while it was on its way"))
                raise
            start = 0
            for p in call:
                p.turn.set_result(ids[start : start + len(p.new.jobs)])
                start += len(p.new.jobs)


def _closed(when: str) -> RedisUnavailable:
    return RedisUnavailable(f"the client closed {when}: the post may or may not have been made")


def _read(turn: asyncio.Future[list[str] | None]) -> None:
    if not turn.cancelled():
        turn.exception()  # read, so that asyncio does not log it as never retrieved


def _calls(batch: list[_Post]) -> list[list[_Post]]:
    """The batch's posts by option set, in order, cut where a call would grow too big."""
    calls: dict[Hashable, tuple[list[_Post], int, int]] = {}  # share -> (call, jobs, bytes)
    done: list[list[_Post]] = []
    for p in batch:
        share, p_size = p.share, p.size
        call, jobs, size = calls.get(share, ([], 0, 0))
        jobs, size = jobs + len(p.new.jobs), size + p_size
        if call and (jobs > MOST_JOBS or size > MOST_CALL_BYTES):
            done.append(call)
            call, jobs, size = [], len(p.new.jobs), p_size
        call.append(p)
        calls[share] = (call, jobs, size)
    return done + [call for call, _, _ in calls.values()]

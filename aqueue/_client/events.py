"""What a client hears of its queue's jobs, and whom it tells: the tasks awaiting a result,
the streams watching a job, and the outcomes of its own posts heard before anyone awaited them.

One subscription per client, however many jobs are awaited or watched; after every
(re)subscription, the stored state of everything awaited is read again, since events during an
outage are lost.
"""

from __future__ import annotations

from collections.abc import Callable

import msgpack

from aqueue import _codec
from aqueue._client.subscription import Subscription
from aqueue._client.waiters import ResultWaiters, WatchedPosts
from aqueue._client.watchers import Watchers
from aqueue._redis.pubsub import SharedSubscription
from aqueue._redis.records import stored_status
from aqueue._redis.store import Store
from aqueue.errors import JobNotFound
from aqueue.job import TERMINAL, JobEvent, JobStatus, Progress

TERMINAL_NAMES = frozenset(s.value.encode() for s in TERMINAL)


class JobEvents:
    def __init__(
        self, store: Callable[[], Store], queue: str, shared: SharedSubscription | None = None
    ) -> None:
        self._store = store  # the client's, once it is open
        self._queue = queue
        self.waiters = ResultWaiters()
        self.watched = WatchedPosts()  # single posts made while subscribed (see Client.post)
        self.watchers = Watchers()
        self.subscription = Subscription(self._on_event, shared)

    async def listen_or_leave(self) -> None:
        try:
            await self.subscription.ensure(self._store())
        except BaseException:  # cancelled once joined, say: nobody will wait to leave it
            self.leave_if_idle()
            raise

    def leave_if_idle(self) -> None:
        """A client over a shared subscription leaves it once nobody of its own waits."""
        if not self.waiters and not self.watchers:
            self.subscription.leave(self._store())

    async def stop(self) -> None:
        await self.subscription.stop(self._store())

    async def current(self, job_id: str) -> list[JobEvent]:
        """The job's state now, as events: its progress if any, then its status; watched
        from before it was read, so no later change goes unheard."""
        store = self._store()
        await store.watch([job_id])
        status, value, message = await store.job_field_values(
            job_id, ["status", "progress", "progress_msg"]
        )
        if status is None:
            raise JobNotFound(job_id, self._queue)
        events = []
        if value is not None:
            events.append(JobEvent(job_id, progress=stored_progress(job_id, value, message)))
        events.append(JobEvent(job_id, status=stored_status(status)))
        return events

    async def _on_event(self, channel: str, data: bytes | None) -> None:
        if data is None:  # (re)subscribed: what ended meanwhile went unheard
            self.watched.resubscribed()
            await self._recheck_waiters()
            await self._recheck_watchers()
            return
        await self._on_change(data)  # one it cannot read is logged and passed over (follow)

    async def _on_change(self, data: bytes) -> None:
        # raw: Lua's cmsgpack packs every string as str, binary ones included
        raw_id, kind, *rest = msgpack.unpackb(data, raw=True)
        job_id = raw_id.decode()
        if kind == b"status":
            if rest[0] in TERMINAL_NAMES:
                result = rest[1] if len(rest) > 1 else None
                if not self.waiters.ended(job_id, result):  # ours? kept for when awaited
                    self.watched.ended(job_id, rest[0], result)
            self.watchers.tell(JobEvent(job_id, status=stored_status(rest[0])))
        elif kind == b"purged":  # the queue was emptied: whoever waits must look again
            self.watched.clear()
            await self._recheck_waiters()
        elif kind == b"active":  # a claim: one event for its whole batch
            for claimed in rest[0]:
                if claimed.decode() in self.watchers:
                    self.watchers.tell(JobEvent(claimed.decode(), status=JobStatus.ACTIVE))
        elif kind == b"progress" and job_id in self.watchers:
            message = rest[1].decode(errors="replace") or None
            self.watchers.tell(JobEvent(job_id, progress=Progress(_codec.decode(rest[0]), message)))

    async def _recheck_waiters(self) -> None:
        ids = self.waiters.ids()
        if not ids:
            return
        for job_id, status in zip(ids, await self._store().statuses(ids), strict=True):
            if status is None or status in TERMINAL_NAMES:
                self.waiters.wake(job_id)

    async def _recheck_watchers(self) -> None:
        for job_id in self.watchers.ids():
            for event in await self.current(job_id):
                self.watchers.tell(event)


def stored_progress(job_id: str, value: bytes, message: bytes | None) -> Progress:
    """A job's progress as stored: its value, and its message or None."""
    return Progress(
        _codec.decode(value, f"progress of job {job_id!r}"),
        message.decode(errors="replace") if message else None,
    )

"""Who awaits which job's result, and what a client heard of its own posts before anyone did.

Both are keyed by job id and fed by the client's subscription to its queue's events.
"""

from __future__ import annotations

from typing import Any

import anyio

from aqueue._client.by_job import ByJob

_REMEMBERED = 10_000  # entries of a bounded record, oldest out


class ResultWaiters:
    """The tasks in block_until_result, by job, and the small results pushed with their
    completion events (no read needed for those)."""

    def __init__(self) -> None:
        self._events: ByJob[anyio.Event] = ByJob()
        self._results: dict[str, bytes] = {}

    def __bool__(self) -> bool:
        return bool(self._events)

    def ids(self) -> list[str]:
        return self._events.ids()

    def add(self, job_id: str) -> anyio.Event:
        """A new waiter's event, set when the job ends (or may have)."""
        done = anyio.Event()
        self._events.add(job_id, done)
        return done

    def remove(self, job_id: str, done: anyio.Event) -> None:
        """The waiter is gone; with the last of a job's, its pushed result goes too."""
        if self._events.discard(job_id, done):
            self._results.pop(job_id, None)

    def result(self, job_id: str) -> bytes | None:
        """The result that came with the job's completion event, if one did."""
        return self._results.get(job_id)

    def ended(self, job_id: str, result: bytes | None) -> bool:
        """The job ended (with a small result or None): wake its waiters; False if none."""
        if job_id not in self._events:
            return False
        if result is not None:
            self._results[job_id] = result
        self.wake(job_id)
        return True

    def wake(self, job_id: str) -> None:
        for done in self._events.of(job_id):
            done.set()


class WatchedPosts:
    """Single posts made while subscribed: their outcomes reach the subscription, so awaiting
    one needs no watch round trip. Remembers each post's subscription epoch (events between
    two subscriptions may have been lost) and the outcomes heard before anyone awaited them:
    job id -> (status, small result or None). Both bounded, oldest out."""

    def __init__(self) -> None:
        self.epoch = 0  # counts (re)subscriptions
        self._posted: dict[str, int] = {}
        self._ended: dict[str, tuple[bytes, bytes | None]] = {}

    def resubscribed(self) -> None:
        self.epoch += 1  # what was posted before may have ended unheard

    def posting(self, job_ids: list[str]) -> None:
        """Ours before they are sent: an outcome can reach the subscription before the reply."""
        for job_id in job_ids:
            _remember(self._posted, job_id, self.epoch)

    def posted(self, job_ids: list[str], made: set[str]) -> None:
        """Forget those of `job_ids` not in `made`: not posted, or a key's earlier job."""
        for job_id in job_ids:
            if job_id not in made:
                self._posted.pop(job_id, None)
                self._ended.pop(job_id, None)

    def ended(self, job_id: str, status: bytes, result: bytes | None) -> None:
        """A job ended with nobody waiting: kept for when someone does, if it is ours."""
        if job_id in self._posted:
            forgotten = _remember(self._ended, job_id, (status, result))
            if forgotten is not None:  # then awaiting it asks Redis again
                self._posted.pop(forgotten, None)

    def take_ended(self, job_id: str) -> tuple[bytes, bytes | None] | None:
        """The outcome heard of one of ours before it was awaited, if any (once)."""
        ended = self._ended.pop(job_id, None)
        if ended is not None:
            self._posted.pop(job_id, None)
        return ended

    def heard_from_the_start(self, job_id: str) -> bool:
        """Posted in the current subscription: its outcome will reach us (asked once)."""
        return self._posted.pop(job_id, None) == self.epoch

    def clear(self) -> None:
        """The queue was purged: whoever awaits must look again."""
        self._posted.clear()
        self._ended.clear()


def _remember(into: dict[str, Any], key: str, value: Any) -> str | None:
    """Keep `key` in a bounded record; the oldest key it pushed out, if any."""
    into[key] = value
    if len(into) > _REMEMBERED:
        oldest = next(iter(into))
        del into[oldest]
        return oldest
    return None

"""How long a stopping worker may take, whatever Redis answers (errors, or nothing at all).

A worker's run sits in one cancel scope whose deadline its stop sets: the grace period for
running jobs, then `WRAP_UP` seconds to hand jobs back, record outcomes and deregister. A
second stop ("now") brings the deadline to `HAND_BACK` seconds away. The steps that must not
be abandoned half-way by an ordinary cancellation (a claim being read, outcomes being
recorded) are shielded, but only until that same deadline: past it the worker leaves, and
the reaper recovers whatever it could not hand back once its leases lapse.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import anyio

WRAP_UP = 5.0  # seconds after the grace period to hand back, record and deregister
HAND_BACK = 2.0  # seconds a second stop leaves for handing running jobs back


class StopClock:
    """The deadlines of one run. Made inside the event loop, when the run starts."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.run = anyio.CancelScope()  # around the whole run: its deadline is the hard stop
        self.drain_by = math.inf  # when running jobs stop getting time to finish
        self._draining: anyio.CancelScope | None = None
        self._shields: set[anyio.CancelScope] = set()

    def stop(self, *, now: bool = False) -> None:
        """Start the clock (the first call), or bring the end to `HAND_BACK` away (`now`)."""
        start = anyio.current_time()
        if math.isinf(self.drain_by):
            self.drain_by = start + self.grace
        self._end_by(start + (HAND_BACK if now else self.grace + WRAP_UP))
        if now:
            self.drain_by = min(self.drain_by, start)
            if self._draining is not None:
                self._draining.cancel()

    def abandon(self) -> None:
        """End the run at once (it holds no job yet: nothing to drain or hand back)."""
        self.run.cancel()

    def _end_by(self, deadline: float) -> None:
        if deadline < self.run.deadline:
            self.run.deadline = deadline
            for scope in self._shields:
                scope.deadline = min(scope.deadline, deadline)

    @contextmanager
    def draining(self) -> Iterator[None]:
        """While running jobs may still finish: until the grace period ends, or a stop now."""
        with anyio.CancelScope(deadline=self.drain_by) as self._draining:
            yield

    @contextmanager
    def shielded(self, most: float = math.inf) -> Iterator[anyio.CancelScope]:
        """Shielded from cancellation for at most `most` seconds, and never past the end."""
        deadline = min(anyio.current_time() + most, self.run.deadline)
        with anyio.CancelScope(shield=True, deadline=deadline) as scope:
            self._shields.add(scope)
            try:
                yield scope
            finally:
                self._shields.discard(scope)

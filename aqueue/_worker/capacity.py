"""A worker's capacity, counted in one place: claim places, slots (runners) and threads.

Pure and synchronous: the worker's async shell asks it what to do (how many places a claim may
take, whether a runner retires, how many threads plain functions may use) and applies that.

Places. A job holds a *claim place* from its claim to its outcome; there are `concurrency +
prefetch` of them, so a worker holds at most `prefetch` jobs beyond its busy slots. A place is
always in exactly one spot: free, *parked* (a prefetch place the gauge of `prefetch.py` does not
want used now), *claiming* (taken by a claim on its way to Redis), or *held* by a job. A job a
post pushed to this worker arrives leased already: it takes a free place, or, when a claim took
them all meanwhile, an *overdraft*, a place borrowed that the next place given up pays back.

Slots. `concurrency` runners take jobs from the inbox, one at a time. A job that awaits another
*lends* its slot: its place is given up for good, one more runner starts and one more thread may
run, so that a worker with one slot never deadlocks on a child job; waits side by side lend
once. When its last wait ends it *gives the slot back*: the next runner between jobs retires
(never one running a job), and the job goes on once one has; a stopping worker starts no job
again, so then no runner need retire. A job cancelled while it waits (a timeout, say) frees its
runner: that runner is the one to retire, before the other give-backs are answered.

Invariants (tests/unit/test_capacity.py checks them after every sequence of events):
  - free + parked + claiming + held == concurrency + prefetch + overdraft, each count >= 0:
    places in use never exceed concurrency + prefetch + overdraft
  - parked <= prefetch; a waiting claim means no place is free
  - lent == the jobs lending their slot now; threads == concurrency + lent
  - until the worker stops: runners == concurrency + lent + retiring (give-backs waiting for a
    runner to retire), so jobs running, not lending, never exceed concurrency
  - every give-back that waits is answered by exactly one retiring runner
  - a job that lends its slot again, later, gives up no second place
"""

from __future__ import annotations

from collections import deque
from typing import Generic, Protocol, TypeVar

W = TypeVar("W")  # what a give-back waits on (the shell's event; anything, in tests)


class Holder(Protocol):
    """A job's share: its claim place, and how many of its waits lend its slot now."""

    holds_place: bool
    lends: int


class Capacity(Generic[W]):
    def __init__(self, concurrency: int, prefetch: int) -> None:
        self.concurrency = concurrency
        self.prefetch = prefetch
        self.free = concurrency + prefetch
        self.parked = 0
        self.claiming = 0
        self.held = 0
        self.overdraft = 0
        self.awaiting = False  # the claim waits for a place: the next one given up is its own
        self.lent = 0
        self.runners = concurrency
        self.retiring: deque[W] = deque()  # give-backs waiting, each for a runner to retire

    # -- places --------------------------------------------------------------------------

    def park(self, prefetch_now: int) -> None:
        """Hold back the prefetch places beyond the `prefetch_now` the gauge wants used."""
        wanted = self.prefetch - prefetch_now
        if self.parked < wanted:
            more = min(wanted - self.parked, self.free)
            self.free -= more
            self.parked += more
        elif self.parked > wanted:
            self.free += self.parked - wanted
            self.parked = wanted

    def take_place(self) -> bool:
        """A claim's first place. False: none is free, the claim waits, and the next place
        given up is handed to it (`give_up` says when)."""
        if self.free:
            self.free -= 1
            self.claiming += 1
            return True
        self.awaiting = True
        return False

    def stop_awaiting(self) -> None:
        """The waiting claim was cancelled: a place handed to it meanwhile is free again."""
        if self.awaiting:
            self.awaiting = False
        else:
            self.claiming -= 1
            self.free += 1

    def take_more(self, most: int) -> int:
        """Up to `most` more places for the claim that holds one, as many as are free."""
        more = min(most, self.free)
        self.free -= more
        self.claiming += more
        return more

    def claimed(self, taken: int, jobs: int) -> None:
        """A claim of `taken` places came back with `jobs` jobs (0: it failed): they hold
        those places, the rest are free again."""
        self.claiming -= taken
        self.held += jobs
        self.free += taken - jobs

    def pushed(self) -> None:
        """A job pushed to this worker, leased already: a free place, or an overdraft."""
        self.held += 1
        if self.free:
            self.free -= 1
        else:
            self.overdraft += 1

    def give_up(self) -> bool:
        """A job gives up its place: it pays back an overdraft, goes to the waiting claim
        (True: wake it), or is free."""
        self.held -= 1
        if self.overdraft:
            self.overdraft -= 1
        elif self.awaiting:
            self.awaiting = False
            self.claiming += 1
            return True
        else:
            self.free += 1
        return False

    def leave(self, job: Holder) -> bool:
        """The job leaves this worker (its outcome known, or handed back): its place, if it
        still holds one, is given up. True: wake the claim."""
        return job.holds_place and self.give_up()

    # -- slots ---------------------------------------------------------------------------

    @property
    def threads(self) -> int:
        """How many plain functions may run in threads at once."""
        return self.concurrency + self.lent

    def lend(self, job: Holder) -> bool:
        """The job waits on another. True: its first such wait, which starts one more runner
        and gives up its place for good (the claim may have been handed it: wake it)."""
        job.lends += 1
        if job.lends > 1:
            return False
        self.lent += 1
        self.runners += 1
        if job.holds_place:  # not when it lent before: that gave it up already
            job.holds_place = False
            self.give_up()
        return True

    def give_back(self, job: Holder, waiter: W, *, stopping: bool) -> bool:
        """One of the job's waits ended. True: it was the last, and the job goes on only once
        `waiter` is handed to a runner that retires (`runner_free`)."""
        job.lends -= 1
        if job.lends:
            return False
        self.lent -= 1
        if stopping:  # no job starts any more, and the runners are leaving anyway
            return False
        self.retiring.append(waiter)
        return True

    def withdraw(self, waiter: W) -> None:
        """A give-back was cancelled while it waited: its job ends, and the runner that ran it
        (free now) is to be the one that retires, before the other give-backs are answered
        (else two jobs could run on that one slot)."""
        if waiter in self.retiring:
            self.retiring.remove(waiter)
            self.retiring.appendleft(waiter)

    def runner_free(self) -> W | None:
        """A runner is between jobs: does it retire? Then the waiter it answers."""
        if not self.retiring:
            return None
        self.runners -= 1
        return self.retiring.popleft()

    def runner_leaves(self) -> W | None:
        """A runner ends (the inbox closed): it answers a waiting give-back, if any."""
        self.runners -= 1
        return self.retiring.popleft() if self.retiring else None

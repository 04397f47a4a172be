"""The capacity ledger keeps its invariants after every sequence of events a worker can send it.

`Model` plays the worker's shell as `aqueue/_worker/worker.py` does: one claim loop (park, take a
place or wait for one, claim, jobs into the inbox), posts pushing jobs, runners taking jobs and
retiring, jobs lending their slot and giving it back (or cancelled while they wait), and a stop.
Every state reachable within `DEPTH` events is visited (breadth first, each state once) for
small configurations, and the invariants of `capacity.py`'s docstring are checked in each.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from aqueue._worker.capacity import Capacity

DEPTH = 14
BATCH = 2  # the claim batch
MOST_JOBS = 3  # on this worker at once: bounds the states
MOST_LENDS = 2  # waits side by side of one job


@dataclass(eq=False)
class Job:
    holds_place: bool = True
    lends: int = 0
    returning: bool = False  # gave its slot back, waits for a runner to retire
    where: str = "inbox"  # inbox | runner | gone

    def key(self) -> tuple[bool, int, bool, str]:
        return (self.holds_place, self.lends, self.returning, self.where)


@dataclass
class Model:
    capacity: Capacity[Job]
    claim: int | str | None = None  # None: idle; "waiting" for a place; places taken
    inbox: list[Job] | None = None
    runners: list[Job | None] | None = None  # the job each runs (None: between jobs)
    stopping: bool = False
    waited: int = 0  # give-backs that waited for a runner to retire
    answered: int = 0  # and those answered by one

    @classmethod
    def start(cls, concurrency: int, prefetch: int) -> Model:
        return cls(Capacity(concurrency, prefetch), inbox=[], runners=[None] * concurrency)

    @property
    def jobs(self) -> list[Job]:
        assert self.inbox is not None and self.runners is not None
        return self.inbox + [job for job in self.runners if job is not None]

    def key(self) -> tuple[object, ...]:
        c = self.capacity
        assert self.inbox is not None and self.runners is not None
        return (
            c.free, c.parked, c.claiming, c.held, c.overdraft, c.awaiting, c.lent, c.runners,
            tuple(job.key() for job in c.retiring),
            self.claim, self.stopping,
            tuple(job.key() for job in self.inbox),
            tuple(sorted(job.key() if job else (False, -1, False, "idle") for job in self.runners)),
        )  # fmt: skip

    # -- events: (name, method, its arguments) for every way each can happen now ---------

    def events(self) -> Iterator[tuple[str, Callable[..., None], tuple[int, ...]]]:
        c = self.capacity
        assert self.inbox is not None and self.runners is not None
        room = len(self.jobs) < MOST_JOBS
        if self.claim is None and not self.stopping:
            for now in range(c.prefetch + 1):
                yield f"park {now}", Model.park, (now,)
            for alone in (False, True):
                yield f"claim alone={alone}", Model.claim_starts, (alone,)
        if self.claim == "waiting" and not c.awaiting:
            yield "claim handed a place", Model.claim_goes_on, (False,)
        if isinstance(self.claim, int):
            for got in range(self.claim + 1):
                if got == 0 or room:
                    yield f"claim got {got}", Model.claim_returns, (got,)
        if room:
            yield "push", Model.push, ()
        for index, job in enumerate(self.runners):
            if job is None:
                yield f"runner {index} looks", Model.runner_looks, (index,)
            elif job.returning:
                yield f"job {index} cancelled waiting", Model.job_cancelled, (index,)
            else:
                if not job.lends:
                    yield f"job {index} ends", Model.job_ends, (index,)
                if job.lends < MOST_LENDS:
                    yield f"job {index} lends", Model.job_lends, (index,)
                if job.lends:
                    yield f"job {index} gives back", Model.job_gives_back, (index,)
        if not self.stopping:
            yield "stop", Model.stop, ()

    def park(self, prefetch_now: int) -> None:
        self.capacity.park(prefetch_now)

    def claim_starts(self, alone: bool) -> None:
        if self.capacity.take_place():
            self.claim_goes_on(alone)
        else:
            self.claim = "waiting"

    def claim_goes_on(self, alone: bool) -> None:
        self.claim = 1 if alone else 1 + self.capacity.take_more(BATCH - 1)

    def claim_returns(self, got: int) -> None:
        assert isinstance(self.claim, int)
        self.capacity.claimed(self.claim, got)
        self.claim = None
        for _ in range(got):
            self.arrives(Job())

    def push(self) -> None:
        self.capacity.pushed()
        self.arrives(Job())

    def arrives(self, job: Job) -> None:
        assert self.inbox is not None
        if self.stopping:  # handed straight back
            self.capacity.give_up()
        else:
            self.inbox.append(job)

    def runner_looks(self, index: int) -> None:
        assert self.inbox is not None and self.runners is not None
        answered = self.capacity.runner_free()
        if answered is None and self.inbox:
            job = self.inbox.pop(0)
            job.where = "runner"
            self.runners[index] = job
            return
        if answered is None and self.stopping:  # the inbox is closed
            answered = self.capacity.runner_leaves()
        elif answered is None:
            return  # it waits on the inbox
        del self.runners[index]
        if answered is not None:
            self.answered += 1
            answered.returning = False  # goes on (a cancelled one is gone: nothing)

    def job_ends(self, index: int) -> None:
        assert self.runners is not None
        job = self.runners[index]
        assert job is not None
        self.capacity.leave(job)
        job.where, job.returning = "gone", False
        self.runners[index] = None

    def job_cancelled(self, index: int) -> None:
        assert self.runners is not None
        job = self.runners[index]
        assert job is not None
        self.capacity.withdraw(job)
        self.job_ends(index)

    def job_lends(self, index: int) -> None:
        assert self.runners is not None
        job = self.runners[index]
        assert job is not None
        if self.capacity.lend(job):
            self.runners.append(None)  # one more runner

    def job_gives_back(self, index: int) -> None:
        assert self.runners is not None
        job = self.runners[index]
        assert job is not None
        job.returning = self.capacity.give_back(job, job, stopping=self.stopping)
        self.waited += job.returning

    def stop(self) -> None:
        assert self.inbox is not None
        self.stopping = True
        if self.claim == "waiting":  # the claim loop is cancelled
            self.capacity.stop_awaiting()
            self.claim = None
        for job in self.inbox:  # handed back at once
            self.capacity.leave(job)
            job.where = "gone"
        self.inbox = []

    # -- invariants ----------------------------------------------------------------------

    def check(self) -> None:
        c = self.capacity
        assert self.runners is not None
        counts = [c.free, c.parked, c.claiming, c.held, c.overdraft, c.lent, c.runners]
        assert min(counts) >= 0
        places = c.concurrency + c.prefetch
        assert c.free + c.parked + c.claiming + c.held == places + c.overdraft
        assert c.parked <= c.prefetch
        assert c.held == sum(job.holds_place for job in self.jobs)
        claiming = self.claim if isinstance(self.claim, int) else 0
        if self.claim == "waiting":
            claiming = 0 if c.awaiting else 1  # handed its place, not yet running on
        assert c.claiming == claiming
        assert c.awaiting == (self.claim == "waiting" and claiming == 0)
        assert not c.awaiting or c.free == 0
        assert c.lent == sum(job.lends > 0 for job in self.jobs)
        assert all(job.holds_place == (job.lends == 0) for job in self.jobs if job.lends)
        assert c.threads == c.concurrency + c.lent
        assert c.runners == len(self.runners)
        returning = sum(job.returning for job in self.jobs)
        assert returning <= len(c.retiring)  # each waits for one runner to retire
        assert self.waited == self.answered + len(c.retiring)  # and is answered once
        if not self.stopping:
            assert c.runners == c.concurrency + c.lent + len(c.retiring)
            running = [job for job in self.runners if job and not job.lends and not job.returning]
            assert len(running) <= c.concurrency


def explore(concurrency: int, prefetch: int) -> tuple[int, set[str]]:
    """Every state within DEPTH events, checked: how many, and which kinds of event ran."""
    start = Model.start(concurrency, prefetch)
    start.check()
    seen = {start.key()}
    frontier = [start]
    kinds: set[str] = set()
    for _ in range(DEPTH):
        following = []
        for model in frontier:
            for name, event, arguments in list(model.events()):
                after = copy.deepcopy(model)
                event(after, *arguments)
                try:
                    after.check()
                except AssertionError:
                    pytest.fail(f"invariant broken after {name!r} from {model.key()}")
                kinds.add(re.sub(r"\d+", "N", name))
                key = after.key()
                if key not in seen:
                    seen.add(key)
                    following.append(after)
        frontier = following
    return len(seen), kinds


@pytest.mark.parametrize(("concurrency", "prefetch"), [(1, 0), (1, 1), (2, 1)])
def test_every_sequence_of_events_keeps_the_invariants(concurrency: int, prefetch: int) -> None:
    states, kinds = explore(concurrency, prefetch)
    assert states > 500  # the walk went somewhere, and through every kind of event:
    assert kinds >= {
        "park N", "claim alone=False", "claim alone=True", "claim handed a place", "claim got N",
        "push", "runner N looks", "job N ends", "job N lends", "job N gives back",
        "job N cancelled waiting", "stop",
    }  # fmt: skip


def test_a_pushed_job_without_a_place_overdraws_and_the_next_place_given_up_pays_it() -> None:
    capacity: Capacity[object] = Capacity(1, 0)
    assert capacity.take_place()
    capacity.claimed(1, 1)
    capacity.pushed()  # the claim took the only place
    assert (capacity.free, capacity.overdraft, capacity.held) == (0, 1, 2)
    assert not capacity.give_up()
    assert (capacity.free, capacity.overdraft) == (0, 0)
    assert not capacity.give_up()
    assert capacity.free == 1


def test_a_waiting_claim_is_handed_the_next_place_before_a_push_can_take_it() -> None:
    capacity: Capacity[object] = Capacity(1, 0)
    assert capacity.take_place()
    capacity.claimed(1, 1)
    assert not capacity.take_place()  # it waits
    assert capacity.give_up()  # wake it: the place is its own
    assert (capacity.free, capacity.claiming, capacity.awaiting) == (0, 1, False)
    capacity.pushed()
    assert capacity.overdraft == 1


def test_a_claim_cancelled_while_it_waits_leaves_no_place_taken() -> None:
    waiting: Capacity[object] = Capacity(1, 0)
    waiting.free = 0
    assert not waiting.take_place()
    waiting.stop_awaiting()
    assert (waiting.awaiting, waiting.claiming, waiting.free) == (False, 0, 0)
    handed: Capacity[object] = Capacity(1, 0)
    handed.free, handed.held = 0, 1
    assert not handed.take_place()
    assert handed.give_up()
    handed.stop_awaiting()  # it was handed one, then cancelled: the place is free again
    assert (handed.claiming, handed.free) == (0, 1)


def test_parking_follows_the_gauge_both_ways_within_the_free_places() -> None:
    capacity: Capacity[object] = Capacity(2, 3)
    capacity.park(0)
    assert (capacity.parked, capacity.free) == (3, 2)
    capacity.park(2)
    assert (capacity.parked, capacity.free) == (1, 4)
    capacity.park(2)
    assert (capacity.parked, capacity.free) == (1, 4)
    capacity.take_more(4)
    capacity.park(0)  # wants 3 parked, but only free places can be
    assert (capacity.parked, capacity.free) == (1, 0)


def test_a_job_that_lends_twice_in_turn_gives_up_its_place_once() -> None:
    capacity: Capacity[object] = Capacity(1, 0)
    assert capacity.take_place()
    capacity.claimed(1, 1)
    job = Job()
    assert capacity.lend(job) and capacity.free == 1
    assert capacity.give_back(job, "waiter", stopping=False)
    assert capacity.runner_free() == "waiter"
    assert capacity.lend(job)  # a second child, later: its place was given up already
    assert (capacity.free, capacity.held, capacity.runners) == (1, 0, 2)
    assert not capacity.leave(job)


def test_waits_side_by_side_lend_once_and_the_last_gives_back() -> None:
    capacity: Capacity[str] = Capacity(1, 0)
    job = Job()
    assert capacity.lend(job)
    assert not capacity.lend(job)
    assert (capacity.lent, capacity.threads, capacity.runners) == (1, 2, 2)
    assert not capacity.give_back(job, "first", stopping=False)
    assert capacity.give_back(job, "last", stopping=False)
    assert capacity.threads == 1
    assert capacity.runner_free() == "last"
    assert capacity.runner_free() is None
    assert capacity.runners == 1


def test_a_stopping_worker_gives_slots_back_without_retiring_a_runner() -> None:
    capacity: Capacity[str] = Capacity(1, 0)
    job = Job()
    capacity.lend(job)
    assert not capacity.give_back(job, "waiter", stopping=True)
    assert (capacity.lent, capacity.retiring) == (0, type(capacity.retiring)())
    assert capacity.runner_leaves() is None
    assert capacity.runners == 1


def test_a_give_back_answered_before_its_cancellation_is_not_withdrawn() -> None:
    capacity: Capacity[str] = Capacity(1, 0)
    job = Job()
    capacity.lend(job)
    capacity.give_back(job, "waiter", stopping=False)
    assert capacity.runner_free() == "waiter"
    capacity.withdraw("waiter")  # cancelled as it was answered: nothing left to withdraw
    assert not capacity.retiring and capacity.runners == 1


def test_a_runner_leaving_answers_a_give_back_that_waits() -> None:
    capacity: Capacity[str] = Capacity(1, 0)
    job = Job()
    capacity.lend(job)
    capacity.give_back(job, "waiter", stopping=False)
    assert capacity.runner_leaves() == "waiter"
    assert capacity.runner_leaves() is None
    assert capacity.runners == 0

"""The job's lifecycle, as data: the source the scripts, the docs and the tests follow.

Each Lua script performs one event. `BRANCHES` says, for every (status, event) it accepts,
which branch the script takes and when: rows of `Branch(when, to, publishes)`, tried in order,
whose conditions are named predicates over a few `Facts` (is the retry budget spent, is there
a delay, does a worker wait idle...). `take` picks the branch; `TRANSITIONS` is the same table
read as "which statuses may follow". A record's end (purged, or expired past its time to live)
is a target too: `GONE`.

The scripts enforce the table atomically in Redis; `tests/integration/
test_state_conformance.py` drives every script from every status under every combination of
the facts that may matter there, and checks the script took the branch `take` names and
published what it says. The callback delivery of a finished job has a machine of its own
(`CALLBACK_BRANCHES`, checked by `tests/integration/test_callback_states.py`).
`aqueue._diagram` draws both into docs/states.md.

Left out: data a script cannot read (a record's lane, a spec), which buries its job alone as
dead (DESIGN.md decision 13; tests/integration/test_garbage*.py), and the `wake` channel's
messages, which wake workers rather than tell of a job.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Generic, Literal, TypeVar

from aqueue.job import JobStatus as S


class Event(enum.StrEnum):
    POST = "post"  # client: a new job
    PROMOTE = "promote"  # claim/reaper: a scheduled job is due
    CLAIM = "claim"  # worker: take a ready job under a lease (a suspect only alone)
    COMPLETE = "complete"  # worker: the listeners returned
    RETRY = "retry"  # worker: a retryable error with budget left (or, without, to dead)
    FAIL = "fail"  # worker: an error the policy does not retry
    LEASE_LAPSED = "lease_lapsed"  # reaper: the worker stopped renewing its lease
    RELEASE = "release"  # worker: handed back at shutdown, not counted against the budget
    CANCEL = "cancel"  # client
    REQUEUE = "requeue"  # client/operator: from the dead-letter queue (or failed, cancelled)
    PURGE = "purge"  # client/operator: delete the dead letters (purge_dead.lua)
    EXPIRE = "expire"  # reaper: a finished job's record outlived its time to live


class Gone(enum.Enum):
    """The record no longer exists (purged, or expired): where a job's life ends."""

    GONE = "gone"

    def __str__(self) -> str:
        return self.value


GONE = Gone.GONE
Target = S | Gone


class Stale(enum.Enum):
    """A callback delivery this dispatcher may no longer record: its lease lapsed, and another
    delivery (or a requeue) took it over."""

    STALE = "stale"

    def __str__(self) -> str:
        return self.value


STALE = Stale.STALE


@dataclass(frozen=True, slots=True)
class Facts:
    """What the scripts read, beside a job's status, to choose their branch."""

    budget_spent: bool = False  # this attempt was the last its retry budget allows
    delay: bool = False  # post: due later (delay or `at`); retry: a backoff before the next
    idle_worker: bool = False  # a worker waits for work that it can run (post.lua hands it over)
    beside_others: bool = False  # its worker held other jobs too when its lease lapsed
    watched: bool = False  # a client awaits the job (watch.lua): its changes get published
    # the callback delivery's (CALLBACK_BRANCHES)
    attempts_spent: bool = False  # this failed delivery was the last of its attempts
    crashes_spent: bool = False  # its dispatchers stopped mid-delivery more than re-tried for
    retry_waits: bool = False  # a failed delivery's backoff is not over yet


FACT_NAMES: tuple[str, ...] = tuple(f.name for f in fields(Facts))


@dataclass(frozen=True, slots=True)
class Condition:
    """A named predicate over the facts; `reads` names the facts it looks at."""

    name: str  # how the diagram labels an edge taken when it holds ("" for always)
    reads: frozenset[str]
    holds: Callable[[Facts], bool]


ALWAYS = Condition("", frozenset(), lambda facts: True)
DUE_LATER = Condition("due later", frozenset({"delay"}), lambda facts: facts.delay)
IDLE_WORKER = Condition(
    "a worker waits idle", frozenset({"idle_worker"}), lambda facts: facts.idle_worker
)
BUDGET_SPENT = Condition(
    "budget spent", frozenset({"budget_spent"}), lambda facts: facts.budget_spent
)
BACKOFF = Condition("delay > 0", frozenset({"delay"}), lambda facts: facts.delay)
# A lost attempt counts against the budget only where the blame is clear (see reap.lua): it
# ran alone, or its worker held no other job.
BLAMED_AND_SPENT = Condition(
    "budget spent, worker held nothing else",
    frozenset({"budget_spent", "beside_others"}),
    lambda facts: facts.budget_spent and not facts.beside_others,
)
OTHERWISE = Condition("otherwise", frozenset(), lambda facts: True)


@dataclass(frozen=True, slots=True)
class Publish:
    """A job event on the queue's `events` channel (aqueue/_redis/keys.py: events).

    kind "status": [job id, "status", the new status, result?]; kind "active" (a claim's):
    ["", "active", [job ids]]. `watched_only`: published only when a client awaits the job.
    """

    kind: Literal["status", "active"]
    watched_only: bool

    def __str__(self) -> str:
        return self.kind + (" if watched" if self.watched_only else "")


STATUS = Publish("status", watched_only=False)
STATUS_IF_WATCHED = Publish("status", watched_only=True)
ACTIVE_IF_WATCHED = Publish("active", watched_only=True)


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Branch(Generic[T]):
    when: Condition
    to: T
    publishes: Publish | None = None


# (status before, event) -> its branches, the first whose condition holds is taken. `None` is
# "does not exist yet". Any pair not here is refused and leaves the job as it was.
BRANCHES: Mapping[tuple[S | None, Event], Sequence[Branch[Target]]] = {
    (None, Event.POST): (
        Branch(DUE_LATER, S.SCHEDULED),
        # handed straight to the worker, leased to it as a claim would (post.lua)
        Branch(IDLE_WORKER, S.ACTIVE),
        Branch(OTHERWISE, S.QUEUED),
    ),
    (S.SCHEDULED, Event.PROMOTE): (Branch(ALWAYS, S.QUEUED, STATUS),),
    (S.QUEUED, Event.CLAIM): (Branch(ALWAYS, S.ACTIVE, ACTIVE_IF_WATCHED),),
    (S.ACTIVE, Event.COMPLETE): (Branch(ALWAYS, S.COMPLETE, STATUS_IF_WATCHED),),
    (S.ACTIVE, Event.RETRY): (
        Branch(BUDGET_SPENT, S.DEAD, STATUS_IF_WATCHED),
        Branch(BACKOFF, S.SCHEDULED, STATUS_IF_WATCHED),
        Branch(OTHERWISE, S.QUEUED, STATUS_IF_WATCHED),
    ),
    (S.ACTIVE, Event.FAIL): (Branch(ALWAYS, S.FAILED, STATUS_IF_WATCHED),),
    # otherwise queued as a suspect, claimed only alone (claim_alone.lua)
    (S.ACTIVE, Event.LEASE_LAPSED): (
        Branch(BLAMED_AND_SPENT, S.DEAD, STATUS),
        Branch(OTHERWISE, S.QUEUED, STATUS),
    ),
    (S.ACTIVE, Event.RELEASE): (Branch(ALWAYS, S.QUEUED, STATUS_IF_WATCHED),),
    (S.QUEUED, Event.CANCEL): (Branch(ALWAYS, S.CANCELLED, STATUS),),
    (S.SCHEDULED, Event.CANCEL): (Branch(ALWAYS, S.CANCELLED, STATUS),),
    (S.ACTIVE, Event.CANCEL): (Branch(ALWAYS, S.CANCELLED, STATUS),),
    (S.DEAD, Event.REQUEUE): (Branch(ALWAYS, S.QUEUED, STATUS),),
    (S.FAILED, Event.REQUEUE): (Branch(ALWAYS, S.QUEUED, STATUS),),
    (S.CANCELLED, Event.REQUEUE): (Branch(ALWAYS, S.QUEUED, STATUS),),
    # dead letters are kept until purged; other finished records expire after their ttl
    (S.DEAD, Event.PURGE): (Branch(ALWAYS, GONE),),
    (S.COMPLETE, Event.EXPIRE): (Branch(ALWAYS, GONE),),
    (S.FAILED, Event.EXPIRE): (Branch(ALWAYS, GONE),),
    (S.CANCELLED, Event.EXPIRE): (Branch(ALWAYS, GONE),),
}


def take(status: S | None, event: Event, facts: Facts) -> Branch[Target] | None:
    """The branch `event` takes from `status` given `facts`; None when it is refused."""
    return first(BRANCHES.get((status, event), ()), facts)


def first(branches: Sequence[Branch[T]], facts: Facts) -> Branch[T] | None:
    """The first of a row's branches whose condition holds."""
    return next((b for b in branches if b.when.holds(facts)), None)


def published(branch: Branch[T], facts: Facts) -> Publish | None:
    """The job event the branch publishes, given whether a client awaits the job."""
    notice = branch.publishes
    if notice is None or (notice.watched_only and not facts.watched):
        return None
    return notice


def reads(branches: Sequence[Branch[T]]) -> tuple[str, ...]:
    """The facts a row's choice (and what it publishes) depends on, in `Facts` order."""
    read = set().union(*(b.when.reads for b in branches))
    if any(b.publishes is not None and b.publishes.watched_only for b in branches):
        read.add("watched")
    return tuple(name for name in FACT_NAMES if name in read)


# (status before, event) -> the statuses the job may end in: the table above, less the ends
# of records (a status no longer: GONE).
TRANSITIONS: Mapping[tuple[S | None, Event], frozenset[S]] = {
    pair: ends
    for pair, branches in BRANCHES.items()
    if (ends := frozenset(b.to for b in branches if isinstance(b.to, S)))
}


def allowed(status: S | None, event: Event) -> frozenset[S]:
    """The statuses `event` may lead to from `status`; empty when the event is refused."""
    return TRANSITIONS.get((status, event), frozenset())


def is_allowed(status: S | None, event: Event) -> bool:
    """Whether a script performs `event` from `status` (to a status, or to GONE)."""
    return (status, event) in BRANCHES


ACTIVE = S.ACTIVE.value.encode()  # a running job's live status, as Redis replies hold it


def live_status(stored: bytes | None, running: bool) -> bytes | None:
    """A job's status as read from Redis: active while a `running` entry holds its (existing)
    record, which a claim does not write; the record's `stored` status otherwise. In Lua:
    `live_status` in lua/_lib.lua."""
    return ACTIVE if running else stored


class CallbackState(enum.StrEnum):
    """Where the callback of a finished job is (its record's `cb_state`)."""

    PENDING = "pending"  # in the outbox, written with the job's end (finish_terminal)
    DELIVERING = "delivering"  # claimed by a dispatcher, under a lease (claim_callbacks.lua)
    RETRYING = "retrying"  # the receiver failed: tried again after a backoff
    DELIVERED = "delivered"
    FAILED = "failed"  # its attempts, or its re-tries after dispatcher crashes, are spent


class CallbackEvent(enum.StrEnum):
    ENDED = "ended"  # the job ended complete, failed or dead, with a callback (never cancelled)
    CLAIM = "claim"  # claim_callbacks.lua: from the outbox, or a retry that is due
    DELIVERED = "delivered"  # callback_done.lua: the receiver took it
    FAILED = "failed"  # callback_done.lua: the receiver refused it, or did not answer
    LAPSED = "lapsed"  # claim_callbacks.lua: its dispatcher stopped mid-delivery
    REQUEUE = "requeue"  # requeue.lua: the job runs again, and calls back afresh when it ends
    EXPIRE = "expire"  # the job's record was deleted (expired, purged)


ATTEMPTS_SPENT = Condition(
    "attempts spent", frozenset({"attempts_spent"}), lambda facts: facts.attempts_spent
)
CRASHES_SPENT = Condition(
    "re-tries spent", frozenset({"crashes_spent"}), lambda facts: facts.crashes_spent
)
RETRY_WAITS = Condition(
    "backoff not over", frozenset({"retry_waits"}), lambda facts: facts.retry_waits
)

CallbackTarget = CallbackState | Gone | None  # None: no callback state (called back afresh)
_C = CallbackState
_E = CallbackEvent

# (callback state before, event) -> its branches, as BRANCHES. `None` before: the job has no
# callback state yet. callback_done.lua replies with the state it leaves (or "stale": the
# delivery is no longer this dispatcher's; "gone": the record was deleted meanwhile).
CALLBACK_BRANCHES: Mapping[
    tuple[CallbackState | None, CallbackEvent], Sequence[Branch[CallbackTarget]]
] = {
    (None, _E.ENDED): (Branch(ALWAYS, _C.PENDING),),
    (_C.PENDING, _E.CLAIM): (Branch(ALWAYS, _C.DELIVERING),),
    (_C.RETRYING, _E.CLAIM): (Branch(RETRY_WAITS, _C.RETRYING), Branch(OTHERWISE, _C.DELIVERING)),
    (_C.DELIVERING, _E.DELIVERED): (Branch(ALWAYS, _C.DELIVERED),),
    (_C.DELIVERING, _E.FAILED): (
        Branch(ATTEMPTS_SPENT, _C.FAILED),
        Branch(OTHERWISE, _C.RETRYING),
    ),
    # otherwise delivered again at once, in the same claim: not counted as an attempt
    (_C.DELIVERING, _E.LAPSED): (
        Branch(CRASHES_SPENT, _C.FAILED),
        Branch(OTHERWISE, _C.DELIVERING),
    ),
    **{(state, _E.REQUEUE): (Branch(ALWAYS, None),) for state in CallbackState},
    **{(state, _E.EXPIRE): (Branch(ALWAYS, GONE),) for state in CallbackState},
}


# What callback_done.lua answers: the state it leaves, or why it changed nothing.
CallbackReply = CallbackState | Stale | Gone


def callback_reply(text: str) -> CallbackReply:
    """callback_done.lua's reply, read (a ValueError: a reply no script gives)."""
    if text == STALE.value:
        return STALE
    if text == GONE.value:
        return GONE
    return CallbackState(text)


def take_callback(
    state: CallbackState | None, event: CallbackEvent, facts: Facts
) -> Branch[CallbackTarget] | None:
    """The branch `event` takes from a callback's `state`; None when nothing changes."""
    return first(CALLBACK_BRANCHES.get((state, event), ()), facts)

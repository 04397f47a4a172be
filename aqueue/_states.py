"""The job state machine, as data.

Each Lua script performs one event; this table says, for every (status, event), which status
the job may end in. The scripts enforce it atomically in Redis; `tests/integration/
test_state_conformance.py` drives every script from every status and checks they agree.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from aqueue.job import JobStatus as S


class Event(enum.StrEnum):
    POST = "post"  # client: a new job
    PROMOTE = "promote"  # claim/reaper: a scheduled job is due
    CLAIM = "claim"  # worker: take a ready job under a lease
    COMPLETE = "complete"  # worker: the listeners returned
    RETRY = "retry"  # worker: a retryable error with budget left (or, without, to dead)
    FAIL = "fail"  # worker: an error the policy does not retry
    LEASE_LAPSED = "lease_lapsed"  # reaper: the worker stopped renewing its lease
    RELEASE = "release"  # worker: handed back at shutdown, not counted against the budget
    CANCEL = "cancel"  # client
    REQUEUE = "requeue"  # client/operator: from the dead-letter queue (or failed, cancelled)


# (status before, event) -> statuses the job may end in. `None` is "does not exist yet".
TRANSITIONS: Mapping[tuple[S | None, Event], frozenset[S]] = {
    # active: handed straight to a worker waiting for work, leased as a claim would
    (None, Event.POST): frozenset({S.QUEUED, S.SCHEDULED, S.ACTIVE}),
    (S.SCHEDULED, Event.PROMOTE): frozenset({S.QUEUED}),
    (S.QUEUED, Event.CLAIM): frozenset({S.ACTIVE}),
    (S.ACTIVE, Event.COMPLETE): frozenset({S.COMPLETE}),
    (S.ACTIVE, Event.RETRY): frozenset({S.QUEUED, S.SCHEDULED, S.DEAD}),
    (S.ACTIVE, Event.FAIL): frozenset({S.FAILED}),
    # queued as a suspect, claimed only alone (claim_alone.lua); dead once its budget is spent
    (S.ACTIVE, Event.LEASE_LAPSED): frozenset({S.QUEUED, S.DEAD}),
    (S.ACTIVE, Event.RELEASE): frozenset({S.QUEUED}),
    (S.QUEUED, Event.CANCEL): frozenset({S.CANCELLED}),
    (S.SCHEDULED, Event.CANCEL): frozenset({S.CANCELLED}),
    (S.ACTIVE, Event.CANCEL): frozenset({S.CANCELLED}),
    (S.DEAD, Event.REQUEUE): frozenset({S.QUEUED}),
    (S.FAILED, Event.REQUEUE): frozenset({S.QUEUED}),
    (S.CANCELLED, Event.REQUEUE): frozenset({S.QUEUED}),
}


def allowed(status: S | None, event: Event) -> frozenset[S]:
    """The statuses `event` may lead to from `status`; empty when the event is refused."""
    return TRANSITIONS.get((status, event), frozenset())


def is_allowed(status: S | None, event: Event) -> bool:
    return bool(allowed(status, event))

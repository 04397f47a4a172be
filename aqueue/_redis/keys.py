"""The whole keyspace in one place.

Every key and channel of a queue starts with `aq:{<queue>}:`; the braces are a Redis Cluster hash
tag, so all of one queue's keys live in one slot and each Lua script touches one slot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aqueue._checks import QUEUE_NAME
from aqueue.errors import ConfigError

_NAME = re.compile(QUEUE_NAME)
# A job's score in its lane: (100 - priority) * PRIORITY_BAND + seq, its post order (post.lua)
PRIORITY_BAND = 2**44


def check_queue_name(queue: str) -> str:
    if not isinstance(queue, str) or not _NAME.match(queue):
        raise ConfigError(
            f"queue name {queue!r} is invalid: use 1-100 letters, digits, '_', '.' or '-'"
        )
    return queue


@dataclass(frozen=True, slots=True)
class Keys:
    queue: str

    def __post_init__(self) -> None:
        check_queue_name(self.queue)

    @property
    def prefix(self) -> str:
        return f"aq:{{{self.queue}}}:"

    @property
    def pattern(self) -> str:
        """A SCAN pattern matching this queue's keys and no other queue's."""
        return self.prefix + "*"

    def job(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def data(self, key: str) -> str:
        return f"{self.prefix}data:{key}"

    def blob(self, job_id: str) -> str:  # list: a large result's chunks (aqueue/_redis/results.py)
        return f"{self.prefix}blob:{job_id}"

    def upload(self, job_id: str, token: str) -> str:  # list: chunks until finish adopts them
        return f"{self.prefix}upload:{job_id}:{token}"

    @property
    def spec(self) -> str:  # hash: job id -> what a worker needs to run it (msgpack), while kept
        return self.prefix + "spec"

    # hash: job id -> "worker|attempt|started ms" while active; and a placeholder (_lib.lua)
    @property
    def running(self) -> str:
        return self.prefix + "running"

    @property
    def tries(self) -> str:  # hash: job id -> "attempts|released" once tried and back waiting
        return self.prefix + "tries"

    @property
    def watched(self) -> str:  # set of live job ids a client awaits (see watch.lua)
        return self.prefix + "watched"

    @property
    def expiring(self) -> str:  # zset: an older version's, finished job id -> when (ms)
        return self.prefix + "expiring"

    @property
    def expiries(self) -> str:  # zset: finished job ids, a call's joined by ",", -> when (ms)
        return self.prefix + "expiries"

    @property
    def lanes(self) -> str:  # set of the signatures with ready jobs
        return self.prefix + "lanes"

    def lane(self, signature: str) -> str:  # zset of ready job ids by (priority, sequence)
        return f"{self.prefix}lane:{signature}"

    # The lanes indexed by what can serve them (see lane_served in lua/_lib.lua): a worker's
    # kind is the signature of its listeners.
    @property
    def kinds(self) -> str:  # zset: kind of live worker -> latest liveness deadline (ms)
        return self.prefix + "kinds"

    def serving(self, kind: str) -> str:  # set of the signatures of lanes `kind` can serve
        return f"{self.prefix}serves:{kind}"

    @property
    def unserved(self) -> str:  # zset: lanes no live kind can serve -> +inf, or when due (ms)
        return self.prefix + "unserved"

    @property
    def suspects(self) -> str:  # set of the signatures with suspects waiting (reap.lua)
        return self.prefix + "suspects"

    def suspect_lane(self, signature: str) -> str:  # zset: suspects by their lane's order
        return f"{self.prefix}suspect:{signature}"

    @property
    def draining(self) -> str:  # set of worker ids draining to run suspects alone (claim.lua)
        return self.prefix + "draining"

    def held(self, worker_id: str) -> str:  # counter: jobs a worker holds, or did (reap.lua)
        return f"{self.prefix}held:{worker_id}"

    @property
    def scheduled(self) -> str:  # zset: job id -> due time (ms, Redis clock)
        return self.prefix + "scheduled"

    # zset: job id -> lease deadline (ms, Redis clock); and a placeholder at +inf (_lib.lua)
    @property
    def active(self) -> str:
        return self.prefix + "active"

    @property
    def dead(self) -> str:  # zset: job id -> when it died (ms)
        return self.prefix + "dead"

    @property
    def workers(self) -> str:  # zset: worker id -> liveness deadline (ms)
        return self.prefix + "workers"

    def worker(self, worker_id: str) -> str:  # hash: what a worker is and serves
        return f"{self.prefix}worker:{worker_id}"

    @property
    def done(self) -> str:  # hash: worker id -> outcomes recorded (finish), for its status
        return self.prefix + "done"

    @property
    def outbox(self) -> str:  # list of job ids whose callback is due
        return self.prefix + "outbox"

    @property
    def callbacks_active(self) -> str:  # zset: job id -> delivery lease deadline (ms)
        return self.prefix + "cb:active"

    @property
    def callbacks_retry(self) -> str:  # zset: job id -> when to try delivering again (ms)
        return self.prefix + "cb:retry"

    def callback_log(self, job_id: str) -> str:  # list: one line per delivery attempt
        return f"{self.prefix}cblog:{job_id}"

    @property
    def callbacks(self) -> str:  # channel: a callback was put in the outbox
        return self.prefix + "callbacks"

    @property
    def seq(self) -> str:  # counter: jobs ever posted (their order in a lane; the posted total)
        return self.prefix + "seq"

    @property
    def stats(self) -> str:  # hash of counters of outcomes
        return self.prefix + "stats"

    @property
    def events(self) -> str:  # channel: [job id, kind, ...] for status and progress
        return self.prefix + "events"

    @property
    def wake(self) -> str:  # channel: new ready work
        return self.prefix + "wake"

    @property
    def control(self) -> str:  # channel: cancellations for workers
        return self.prefix + "control"

    @property
    def idle(self) -> str:  # hash: worker id -> "free places|lease ms|listener,names"
        return self.prefix + "idle"

    def push(self, worker_id: str) -> str:  # channel: jobs a post handed to this worker
        return f"{self.prefix}push:{worker_id}"
